//! "Did you mean" suggestions for mistyped queue names.

/// Names from `candidates` close to `name` (by edit distance, letter case
/// aside: `ORDERS` finds `orders`), closest first, at most three.
pub fn similar(name: &str, candidates: &[String]) -> Vec<String> {
    let limit = (name.chars().count() / 3).max(2);
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, &String)> = candidates
        .iter()
        .filter(|c| c.as_str() != name)
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= limit || c.starts_with(name) || name.starts_with(c.as_str()))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}

/// Levenshtein distance between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("orders", "orders"), 0);
        assert_eq!(edit_distance("ordrs", "orders"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn suggestions_are_close_and_ordered() {
        let names: Vec<String> = ["orders", "order-events", "payments", "ordes"]
            .map(String::from)
            .to_vec();
        assert_eq!(similar("ordrs", &names), vec!["orders", "ordes"]);
        assert!(similar("zzzzzz", &names).is_empty());
        assert_eq!(similar("ORDERS", &names)[0], "orders");
    }
}
