
use builtin;
use str;

set edit:completion:arg-completer[spool] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'spool'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'spool'= {
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand publish 'Publish messages to a queue or topic'
            cand consume 'Lease messages and print them as JSON lines'
            cand ack 'Mark deliveries as done'
            cand nack 'Give deliveries back to the queue, now or later'
            cand extend 'Extend the leases of deliveries (a heartbeat)'
            cand queue 'Create queues and change their settings'
            cand subscribe 'Subscribe a queue to a topic: it receives a copy of each message published to it'
            cand unsubscribe 'Stop a queue receiving a topic''s messages'
            cand completions 'Print a shell completion script'
            cand man 'Print the man page'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'spool;publish'= {
            cand --key 'Deduplication key: a key the queue still holds adds nothing and answers the existing id'
            cand --key-from 'Take the key from each message at this JSON pointer (e.g. /order_id)'
            cand --delay 'Deliverable only after this long (e.g. 30s, 5m)'
            cand --at 'Deliverable only from this time on (RFC 3339)'
            cand --priority 'Higher first, from -100 to 100; equal priority in id order'
            cand --group 'Ordered group: its messages are delivered one at a time, in id order'
            cand --group-from 'Take the group from each message at this JSON pointer'
            cand --header 'A string header, returned by consume and peek (repeatable)'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --single 'All of stdin is one message (e.g. a pretty-printed JSON document)'
            cand --stream 'Commit as input arrives, for endless input; a bad line stops after the earlier ones are committed'
            cand --raw 'Bodies are text lines (or all of stdin with --single), not JSON'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;consume'= {
            cand -n 'Lease up to N messages at once'
            cand --visibility 'How long the messages stay invisible to others [default: the queue''s visibility]'
            cand --wait 'Wait up to DUR for the first message (long poll)'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --follow 'Keep delivering as messages arrive, until interrupted'
            cand --ack 'Ack on delivery (at-most-once, like a pop)'
            cand --body 'Print only the bodies, exactly as stored, one per line'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;ack'= {
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;nack'= {
            cand --delay 'Deliverable again only after DUR'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --backoff 'Deliverable again after the queue''s exponential backoff (retry_delay × 2^(attempt−1))'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;extend'= {
            cand --by 'The lease ends this long from now'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;queue'= {
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand create 'Create a queue with settings (a no-op if it exists with the same settings)'
            cand set 'Change the settings of an existing queue'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'spool;queue;create'= {
            cand --visibility 'How long a delivery stays invisible to other consumers [default: 30s]'
            cand --max-attempts 'Deliveries before a message is dead; 0 for unlimited [default: 5]'
            cand --retention 'How long acked messages stay for replay; 0 deletes them on ack [default: 1d]'
            cand --max-size 'The largest body accepted [default: 1MiB]'
            cand --retry-delay 'Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;queue;set'= {
            cand --visibility 'How long a delivery stays invisible to other consumers [default: 30s]'
            cand --max-attempts 'Deliveries before a message is dead; 0 for unlimited [default: 5]'
            cand --retention 'How long acked messages stay for replay; 0 deletes them on ack [default: 1d]'
            cand --max-size 'The largest body accepted [default: 1MiB]'
            cand --retry-delay 'Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;queue;help'= {
            cand create 'Create a queue with settings (a no-op if it exists with the same settings)'
            cand set 'Change the settings of an existing queue'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'spool;queue;help;create'= {
        }
        &'spool;queue;help;set'= {
        }
        &'spool;queue;help;help'= {
        }
        &'spool;subscribe'= {
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;unsubscribe'= {
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;completions'= {
            cand --dir 'Write the scripts for every shell into this folder instead'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;man'= {
            cand --dir 'Write every page into this folder instead'
            cand --db 'The database file [default: $XDG_DATA_HOME/spool/spool.db]'
            cand --color 'When to colour output'
            cand --busy-timeout 'How long to wait for another process''s write lock'
            cand --sync 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only'
            cand --json 'Machine output: JSON even on a terminal'
            cand -q 'No ids, counts, progress or summaries (errors are still shown)'
            cand --quiet 'No ids, counts, progress or summaries (errors are still shown)'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'spool;help'= {
            cand publish 'Publish messages to a queue or topic'
            cand consume 'Lease messages and print them as JSON lines'
            cand ack 'Mark deliveries as done'
            cand nack 'Give deliveries back to the queue, now or later'
            cand extend 'Extend the leases of deliveries (a heartbeat)'
            cand queue 'Create queues and change their settings'
            cand subscribe 'Subscribe a queue to a topic: it receives a copy of each message published to it'
            cand unsubscribe 'Stop a queue receiving a topic''s messages'
            cand completions 'Print a shell completion script'
            cand man 'Print the man page'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'spool;help;publish'= {
        }
        &'spool;help;consume'= {
        }
        &'spool;help;ack'= {
        }
        &'spool;help;nack'= {
        }
        &'spool;help;extend'= {
        }
        &'spool;help;queue'= {
            cand create 'Create a queue with settings (a no-op if it exists with the same settings)'
            cand set 'Change the settings of an existing queue'
        }
        &'spool;help;queue;create'= {
        }
        &'spool;help;queue;set'= {
        }
        &'spool;help;subscribe'= {
        }
        &'spool;help;unsubscribe'= {
        }
        &'spool;help;completions'= {
        }
        &'spool;help;man'= {
        }
        &'spool;help;help'= {
        }
    ]
    $completions[$command]
}
