//! How deeply a broadcast's `data` nests: viewers' JSON parsers have limits
//! (Python's and browsers' near a thousand levels, some mini-program runtimes
//! far fewer), so `data` deeper than [`MAX_DEPTH`] is refused before it is
//! numbered, on every API that publishes.
//!
//! The text has already been validated as JSON by the parser that extracted
//! it, so this scan only counts brackets outside strings: one pass over the
//! bytes, no allocation, no recursion (a 40 KB body of `[` cannot overflow
//! anything here).

/// The deepest `data` accepted: 64 levels of arrays and objects.
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting of arrays and objects in `json` (valid JSON text).
pub fn depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json.as_bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// True when `json` nests no deeper than [`MAX_DEPTH`].
pub fn within_limit(json: &str) -> bool {
    depth(json) <= MAX_DEPTH
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    /// The depth as serde_json's value tree has it.
    fn tree_depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(tree_depth).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.values().map(tree_depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert_eq!(depth(r#"{"a":"[[[{{","b":["\"[",{"c":[]}]}"#), 4);
        assert_eq!(depth("42"), 0);
        assert!(within_limit(&nested(64)));
        assert!(!within_limit(&nested(65)));
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[\\[\\]{}\"\\\\a-z]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(12, 64, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[\\[{\"a-z]{0,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever the strings hold, the scan agrees with the parsed tree.
        #[test]
        fn agrees_with_the_parsed_tree(value in json()) {
            let text = serde_json::to_string(&value).unwrap();
            prop_assert_eq!(depth(&text), tree_depth(&value));
        }
    }
}
