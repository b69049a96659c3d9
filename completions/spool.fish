# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_spool_global_optspecs
    string join \n db= json q/quiet color= busy-timeout= sync= h/help V/version
end

function __fish_spool_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_spool_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_spool_using_subcommand
    set -l cmd (__fish_spool_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c spool -n "__fish_spool_needs_command" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_needs_command" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_needs_command" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_needs_command" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_needs_command" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_needs_command" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_needs_command" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_needs_command" -f -a "publish" -d 'Publish messages to a queue or topic'
complete -c spool -n "__fish_spool_needs_command" -f -a "consume" -d 'Lease messages and print them as JSON lines'
complete -c spool -n "__fish_spool_needs_command" -f -a "ack" -d 'Mark deliveries as done'
complete -c spool -n "__fish_spool_needs_command" -f -a "nack" -d 'Give deliveries back to the queue, now or later'
complete -c spool -n "__fish_spool_needs_command" -f -a "extend" -d 'Extend the leases of deliveries (a heartbeat)'
complete -c spool -n "__fish_spool_needs_command" -f -a "queue" -d 'Create queues and change their settings'
complete -c spool -n "__fish_spool_needs_command" -f -a "subscribe" -d 'Subscribe a queue to a topic: it receives a copy of each message published to it'
complete -c spool -n "__fish_spool_needs_command" -f -a "unsubscribe" -d 'Stop a queue receiving a topic\'s messages'
complete -c spool -n "__fish_spool_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c spool -n "__fish_spool_needs_command" -f -a "man" -d 'Print the man page'
complete -c spool -n "__fish_spool_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c spool -n "__fish_spool_using_subcommand publish" -l key -d 'Deduplication key: a key the queue still holds adds nothing and answers the existing id' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l key-from -d 'Take the key from each message at this JSON pointer (e.g. /order_id)' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l delay -d 'Deliverable only after this long (e.g. 30s, 5m)' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l at -d 'Deliverable only from this time on (RFC 3339)' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l priority -d 'Higher first, from -100 to 100; equal priority in id order' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l group -d 'Ordered group: its messages are delivered one at a time, in id order' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l group-from -d 'Take the group from each message at this JSON pointer' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l header -d 'A string header, returned by consume and peek (repeatable)' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand publish" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand publish" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand publish" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand publish" -l single -d 'All of stdin is one message (e.g. a pretty-printed JSON document)'
complete -c spool -n "__fish_spool_using_subcommand publish" -l stream -d 'Commit as input arrives, for endless input; a bad line stops after the earlier ones are committed'
complete -c spool -n "__fish_spool_using_subcommand publish" -l raw -d 'Bodies are text lines (or all of stdin with --single), not JSON'
complete -c spool -n "__fish_spool_using_subcommand publish" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand publish" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand publish" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand publish" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand consume" -s n -d 'Lease up to N messages at once' -r
complete -c spool -n "__fish_spool_using_subcommand consume" -l visibility -d 'How long the messages stay invisible to others [default: the queue\'s visibility]' -r
complete -c spool -n "__fish_spool_using_subcommand consume" -l wait -d 'Wait up to DUR for the first message (long poll)' -r
complete -c spool -n "__fish_spool_using_subcommand consume" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand consume" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand consume" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand consume" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand consume" -l follow -d 'Keep delivering as messages arrive, until interrupted'
complete -c spool -n "__fish_spool_using_subcommand consume" -l ack -d 'Ack on delivery (at-most-once, like a pop)'
complete -c spool -n "__fish_spool_using_subcommand consume" -l body -d 'Print only the bodies, exactly as stored, one per line'
complete -c spool -n "__fish_spool_using_subcommand consume" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand consume" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand consume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand consume" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand ack" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand ack" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand ack" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand ack" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand ack" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand ack" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand ack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand ack" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand nack" -l delay -d 'Deliverable again only after DUR' -r
complete -c spool -n "__fish_spool_using_subcommand nack" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand nack" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand nack" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand nack" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand nack" -l backoff -d 'Deliverable again after the queue\'s exponential backoff (retry_delay × 2^(attempt−1))'
complete -c spool -n "__fish_spool_using_subcommand nack" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand nack" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand nack" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand nack" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand extend" -l by -d 'The lease ends this long from now' -r
complete -c spool -n "__fish_spool_using_subcommand extend" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand extend" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand extend" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand extend" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand extend" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand extend" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand extend" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand extend" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -f -a "create" -d 'Create a queue with settings (a no-op if it exists with the same settings)'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -f -a "set" -d 'Change the settings of an existing queue'
complete -c spool -n "__fish_spool_using_subcommand queue; and not __fish_seen_subcommand_from create set help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l visibility -d 'How long a delivery stays invisible to other consumers [default: 30s]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l max-attempts -d 'Deliveries before a message is dead; 0 for unlimited [default: 5]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l retention -d 'How long acked messages stay for replay; 0 deletes them on ack [default: 1d]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l max-size -d 'The largest body accepted [default: 1MiB]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l retry-delay -d 'Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l visibility -d 'How long a delivery stays invisible to other consumers [default: 30s]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l max-attempts -d 'Deliveries before a message is dead; 0 for unlimited [default: 5]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l retention -d 'How long acked messages stay for replay; 0 deletes them on ack [default: 1d]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l max-size -d 'The largest body accepted [default: 1MiB]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l retry-delay -d 'Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from set" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a queue with settings (a no-op if it exists with the same settings)'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "set" -d 'Change the settings of an existing queue'
complete -c spool -n "__fish_spool_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c spool -n "__fish_spool_using_subcommand subscribe" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand subscribe" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand subscribe" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand subscribe" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand subscribe" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand subscribe" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand subscribe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand subscribe" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand unsubscribe" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand completions" -l dir -d 'Write the scripts for every shell into this folder instead' -r -F
complete -c spool -n "__fish_spool_using_subcommand completions" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand completions" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand completions" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand completions" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand completions" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand completions" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand completions" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand man" -l dir -d 'Write every page into this folder instead' -r -F
complete -c spool -n "__fish_spool_using_subcommand man" -l db -d 'The database file [default: $XDG_DATA_HOME/spool/spool.db]' -r -F
complete -c spool -n "__fish_spool_using_subcommand man" -l color -d 'When to colour output' -r -f -a "auto\t'Colour on a terminal, unless `NO_COLOR` is set or `TERM=dumb`'
always\t'Always colour'
never\t'Never colour'"
complete -c spool -n "__fish_spool_using_subcommand man" -l busy-timeout -d 'How long to wait for another process\'s write lock' -r
complete -c spool -n "__fish_spool_using_subcommand man" -l sync -d 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only' -r -f -a "full\t'Every commit is on disk before the command answers'
normal\t'Survives a crash of the process; a power loss may lose the last commits'"
complete -c spool -n "__fish_spool_using_subcommand man" -l json -d 'Machine output: JSON even on a terminal'
complete -c spool -n "__fish_spool_using_subcommand man" -s q -l quiet -d 'No ids, counts, progress or summaries (errors are still shown)'
complete -c spool -n "__fish_spool_using_subcommand man" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c spool -n "__fish_spool_using_subcommand man" -s V -l version -d 'Print version'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "publish" -d 'Publish messages to a queue or topic'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "consume" -d 'Lease messages and print them as JSON lines'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "ack" -d 'Mark deliveries as done'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "nack" -d 'Give deliveries back to the queue, now or later'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "extend" -d 'Extend the leases of deliveries (a heartbeat)'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "queue" -d 'Create queues and change their settings'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "subscribe" -d 'Subscribe a queue to a topic: it receives a copy of each message published to it'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "unsubscribe" -d 'Stop a queue receiving a topic\'s messages'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "completions" -d 'Print a shell completion script'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "man" -d 'Print the man page'
complete -c spool -n "__fish_spool_using_subcommand help; and not __fish_seen_subcommand_from publish consume ack nack extend queue subscribe unsubscribe completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c spool -n "__fish_spool_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "create" -d 'Create a queue with settings (a no-op if it exists with the same settings)'
complete -c spool -n "__fish_spool_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "set" -d 'Change the settings of an existing queue'
