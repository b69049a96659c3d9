//! Property tests (the CI-run part of fuzzing) and the replay of the fuzz
//! corpus in `fuzz/corpus/`, for the parsers that take untrusted input. The
//! invariants live in `spool::fuzzing`, shared with the cargo-fuzz targets.
//!
//! `PROPTEST_CASES=N` runs more cases than the default 2000 per property.

use std::path::Path;

use proptest::prelude::*;
use spool::fuzzing;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that matter to line splitting, plus anything.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(b'\n'),
            2 => Just(b'\r'),
            4 => Just(b'x'),
            1 => any::<u8>(),
        ],
        0..200,
    )
}

/// A JSON value, nested a little, with numbers past 64 bits now and then.
fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{18,30}",
        "-?[0-9]\\.[0-9]{1,5}(e[+-]?[0-9]{1,3})?",
        "[a-z0-9/~\\\\\"é\u{1}]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("id"),
                        Just("a"),
                        Just("g"),
                        Just("a/b"),
                        Just("0"),
                        Just("")
                    ],
                    inner
                ),
                0..4
            )
            .prop_map(|kv| {
                let fields: Vec<String> = kv
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A line: valid JSON padded with whitespace, JSON-like token soup, or bytes.
fn publish_line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (json_value(), "[ \t\r]{0,2}", "[ \t\r]{0,2}")
            .prop_map(|(v, a, b)| format!("{a}{v}{b}").into_bytes()),
        2 => "[\\[\\]{}\":,\\\\ 0-9a-e.+\\-u\t]{0,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_line_reader_splits_like_the_model(input in line_bytes(), limit in 0u64..40, capacity in 1usize..16) {
        fuzzing::read_lines(&input, limit, capacity);
    }

    #[test]
    fn the_line_checker_keeps_its_invariants(
        line in publish_line(),
        flags in 0usize..fuzzing::FLAG_SETS.len(),
        small in any::<bool>(),
    ) {
        let max = if small { 64 } else { 1 << 20 };
        let _ = fuzzing::check_line(fuzzing::FLAG_SETS[flags], max, line);
    }

    #[test]
    fn receipts_parse_back_from_their_text(q in 1u64..u64::MAX, m in 1u64..u64::MAX, lease in any::<u64>()) {
        let q = q.min(i64::MAX as u64);
        let m = m.min(i64::MAX as u64);
        let text = format!("{q:x}_{m:x}_{lease:016x}");
        prop_assert!(fuzzing::receipt(&text).is_some(), "{}", text);
    }

    #[test]
    fn receipt_parser_survives_any_text(text in "[0-9a-fA-F_x+\\- é]{0,60}") {
        fuzzing::receipt(&text);
    }

    #[test]
    fn durations_add_up(parts in prop::collection::vec((0u64..100_000, prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h"), Just("d")]), 1..4)) {
        let text: String = parts.iter().map(|(n, u)| format!("{n}{u}")).collect();
        let ms: u128 = parts
            .iter()
            .map(|(n, u)| u128::from(*n) * match *u { "ms" => 1, "s" => 1000, "m" => 60_000, "h" => 3_600_000, _ => 86_400_000 })
            .sum();
        match fuzzing::duration(&text) {
            Some(d) => prop_assert_eq!(d.as_millis(), ms),
            None => prop_assert!(ms > spool::parse::MAX_DURATION.as_millis(), "{} refused", text),
        }
    }

    #[test]
    fn duration_time_and_size_parsers_survive_any_text(text in "[0-9smhdKMGiB.:+\\-TZ ]{0,30}|\\PC{0,20}") {
        fuzzing::duration(&text);
        fuzzing::time(&text);
        fuzzing::size(&text);
    }

    #[test]
    fn times_round_trip(y in 0i32..10000, mo in 1u8..13, d in 1u8..29, h in 0u8..24, mi in 0u8..60, s in 0u8..60, frac in "(\\.[0-9]{1,9})?", off in "Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]") {
        let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}");
        fuzzing::time(&text);
    }
}

/// Every file under `fuzz/corpus/TARGET/` still passes its target: inputs
/// the fuzzer found interesting, and the regressions it found.
#[test]
fn the_fuzz_corpus_replays_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Target = fn(&[u8]);
    let targets: [(&str, Target); 3] = [
        ("read_lines", fuzzing::fuzz_read_lines),
        ("check_line", fuzzing::fuzz_check_line),
        ("text", fuzzing::fuzz_text),
    ];
    let mut replayed = 0;
    for (name, target) in targets {
        let dir = root.join(name);
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", path.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} corpus inputs");
    assert!(
        replayed >= 30,
        "the corpus is missing: only {replayed} inputs"
    );
}
