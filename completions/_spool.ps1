
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'spool' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'spool'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'spool' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('publish', 'publish', [CompletionResultType]::ParameterValue, 'Publish messages to a queue or topic')
            [CompletionResult]::new('consume', 'consume', [CompletionResultType]::ParameterValue, 'Lease messages and print them as JSON lines')
            [CompletionResult]::new('ack', 'ack', [CompletionResultType]::ParameterValue, 'Mark deliveries as done')
            [CompletionResult]::new('nack', 'nack', [CompletionResultType]::ParameterValue, 'Give deliveries back to the queue, now or later')
            [CompletionResult]::new('extend', 'extend', [CompletionResultType]::ParameterValue, 'Extend the leases of deliveries (a heartbeat)')
            [CompletionResult]::new('queue', 'queue', [CompletionResultType]::ParameterValue, 'Create queues and change their settings')
            [CompletionResult]::new('subscribe', 'subscribe', [CompletionResultType]::ParameterValue, 'Subscribe a queue to a topic: it receives a copy of each message published to it')
            [CompletionResult]::new('unsubscribe', 'unsubscribe', [CompletionResultType]::ParameterValue, 'Stop a queue receiving a topic''s messages')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'spool;publish' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'Deduplication key: a key the queue still holds adds nothing and answers the existing id')
            [CompletionResult]::new('--key-from', '--key-from', [CompletionResultType]::ParameterName, 'Take the key from each message at this JSON pointer (e.g. /order_id)')
            [CompletionResult]::new('--delay', '--delay', [CompletionResultType]::ParameterName, 'Deliverable only after this long (e.g. 30s, 5m)')
            [CompletionResult]::new('--at', '--at', [CompletionResultType]::ParameterName, 'Deliverable only from this time on (RFC 3339)')
            [CompletionResult]::new('--priority', '--priority', [CompletionResultType]::ParameterName, 'Higher first, from -100 to 100; equal priority in id order')
            [CompletionResult]::new('--group', '--group', [CompletionResultType]::ParameterName, 'Ordered group: its messages are delivered one at a time, in id order')
            [CompletionResult]::new('--group-from', '--group-from', [CompletionResultType]::ParameterName, 'Take the group from each message at this JSON pointer')
            [CompletionResult]::new('--header', '--header', [CompletionResultType]::ParameterName, 'A string header, returned by consume and peek (repeatable)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--single', '--single', [CompletionResultType]::ParameterName, 'All of stdin is one message (e.g. a pretty-printed JSON document)')
            [CompletionResult]::new('--stream', '--stream', [CompletionResultType]::ParameterName, 'Commit as input arrives, for endless input; a bad line stops after the earlier ones are committed')
            [CompletionResult]::new('--raw', '--raw', [CompletionResultType]::ParameterName, 'Bodies are text lines (or all of stdin with --single), not JSON')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;consume' {
            [CompletionResult]::new('-n', '-n', [CompletionResultType]::ParameterName, 'Lease up to N messages at once')
            [CompletionResult]::new('--visibility', '--visibility', [CompletionResultType]::ParameterName, 'How long the messages stay invisible to others [default: the queue''s visibility]')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait up to DUR for the first message (long poll)')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--follow', '--follow', [CompletionResultType]::ParameterName, 'Keep delivering as messages arrive, until interrupted')
            [CompletionResult]::new('--ack', '--ack', [CompletionResultType]::ParameterName, 'Ack on delivery (at-most-once, like a pop)')
            [CompletionResult]::new('--body', '--body', [CompletionResultType]::ParameterName, 'Print only the bodies, exactly as stored, one per line')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;ack' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;nack' {
            [CompletionResult]::new('--delay', '--delay', [CompletionResultType]::ParameterName, 'Deliverable again only after DUR')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--backoff', '--backoff', [CompletionResultType]::ParameterName, 'Deliverable again after the queue''s exponential backoff (retry_delay × 2^(attempt−1))')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;extend' {
            [CompletionResult]::new('--by', '--by', [CompletionResultType]::ParameterName, 'The lease ends this long from now')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;queue' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a queue with settings (a no-op if it exists with the same settings)')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Change the settings of an existing queue')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'spool;queue;create' {
            [CompletionResult]::new('--visibility', '--visibility', [CompletionResultType]::ParameterName, 'How long a delivery stays invisible to other consumers [default: 30s]')
            [CompletionResult]::new('--max-attempts', '--max-attempts', [CompletionResultType]::ParameterName, 'Deliveries before a message is dead; 0 for unlimited [default: 5]')
            [CompletionResult]::new('--retention', '--retention', [CompletionResultType]::ParameterName, 'How long acked messages stay for replay; 0 deletes them on ack [default: 1d]')
            [CompletionResult]::new('--max-size', '--max-size', [CompletionResultType]::ParameterName, 'The largest body accepted [default: 1MiB]')
            [CompletionResult]::new('--retry-delay', '--retry-delay', [CompletionResultType]::ParameterName, 'Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;queue;set' {
            [CompletionResult]::new('--visibility', '--visibility', [CompletionResultType]::ParameterName, 'How long a delivery stays invisible to other consumers [default: 30s]')
            [CompletionResult]::new('--max-attempts', '--max-attempts', [CompletionResultType]::ParameterName, 'Deliveries before a message is dead; 0 for unlimited [default: 5]')
            [CompletionResult]::new('--retention', '--retention', [CompletionResultType]::ParameterName, 'How long acked messages stay for replay; 0 deletes them on ack [default: 1d]')
            [CompletionResult]::new('--max-size', '--max-size', [CompletionResultType]::ParameterName, 'The largest body accepted [default: 1MiB]')
            [CompletionResult]::new('--retry-delay', '--retry-delay', [CompletionResultType]::ParameterName, 'Base of the exponential retry backoff of `work` and `nack --backoff` [default: 1s]')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;queue;help' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a queue with settings (a no-op if it exists with the same settings)')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Change the settings of an existing queue')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'spool;queue;help;create' {
            break
        }
        'spool;queue;help;set' {
            break
        }
        'spool;queue;help;help' {
            break
        }
        'spool;subscribe' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;unsubscribe' {
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;completions' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write the scripts for every shell into this folder instead')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;man' {
            [CompletionResult]::new('--dir', '--dir', [CompletionResultType]::ParameterName, 'Write every page into this folder instead')
            [CompletionResult]::new('--db', '--db', [CompletionResultType]::ParameterName, 'The database file [default: $XDG_DATA_HOME/spool/spool.db]')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output')
            [CompletionResult]::new('--busy-timeout', '--busy-timeout', [CompletionResultType]::ParameterName, 'How long to wait for another process''s write lock')
            [CompletionResult]::new('--sync', '--sync', [CompletionResultType]::ParameterName, 'Commit durability: `full` fsyncs every commit, `normal` survives a process crash only')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Machine output: JSON even on a terminal')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No ids, counts, progress or summaries (errors are still shown)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'spool;help' {
            [CompletionResult]::new('publish', 'publish', [CompletionResultType]::ParameterValue, 'Publish messages to a queue or topic')
            [CompletionResult]::new('consume', 'consume', [CompletionResultType]::ParameterValue, 'Lease messages and print them as JSON lines')
            [CompletionResult]::new('ack', 'ack', [CompletionResultType]::ParameterValue, 'Mark deliveries as done')
            [CompletionResult]::new('nack', 'nack', [CompletionResultType]::ParameterValue, 'Give deliveries back to the queue, now or later')
            [CompletionResult]::new('extend', 'extend', [CompletionResultType]::ParameterValue, 'Extend the leases of deliveries (a heartbeat)')
            [CompletionResult]::new('queue', 'queue', [CompletionResultType]::ParameterValue, 'Create queues and change their settings')
            [CompletionResult]::new('subscribe', 'subscribe', [CompletionResultType]::ParameterValue, 'Subscribe a queue to a topic: it receives a copy of each message published to it')
            [CompletionResult]::new('unsubscribe', 'unsubscribe', [CompletionResultType]::ParameterValue, 'Stop a queue receiving a topic''s messages')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Print the man page')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'spool;help;publish' {
            break
        }
        'spool;help;consume' {
            break
        }
        'spool;help;ack' {
            break
        }
        'spool;help;nack' {
            break
        }
        'spool;help;extend' {
            break
        }
        'spool;help;queue' {
            [CompletionResult]::new('create', 'create', [CompletionResultType]::ParameterValue, 'Create a queue with settings (a no-op if it exists with the same settings)')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Change the settings of an existing queue')
            break
        }
        'spool;help;queue;create' {
            break
        }
        'spool;help;queue;set' {
            break
        }
        'spool;help;subscribe' {
            break
        }
        'spool;help;unsubscribe' {
            break
        }
        'spool;help;completions' {
            break
        }
        'spool;help;man' {
            break
        }
        'spool;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
