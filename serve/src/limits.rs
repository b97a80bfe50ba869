//! The limits on a serve config, the same from the CLI (`troupe serve
//! deploy`) and the admin API (`PUT /api/serve/applications/`): its size
//! (a config is stored as one value in the control store, so it stays
//! under the store's value limit) and how deep it nests (the admin API's JSON parser
//! stops at 128 levels; the CLI's YAML text is checked for the same before
//! it is parsed, so a deeply nested file is refused at once).

use thiserror::Error;

/// A config's text (a file, a request body) at most: 1.5 MiB, etcd's
/// request limit. A config is stored as one value, and its parts are
/// copied into an application's spec and each replica's actor record:
/// the store's value limit ([`troupe_gcs::MAX_VALUE_BYTES`], 2 MiB) leaves
/// room for their own fields.
pub const MAX_CONFIG_BYTES: usize = 3 << 19;

const _: () = assert!(MAX_CONFIG_BYTES < troupe_gcs::MAX_VALUE_BYTES);

/// How deep a config may nest: serde_json's recursion limit, which bounds
/// the admin API's parser.
pub const MAX_NESTING: usize = 128;

/// A config over a limit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    #[error("{what} is {bytes} bytes, over the limit of {limit} bytes (1.5 MiB: a config is stored in the control store, which takes values of at most 2 MiB); nothing was deployed. Keep large data out of the config (e.g. out of `user_config`): let the replicas load it from a file or a model store")]
    TooLarge {
        what: &'static str,
        bytes: usize,
        limit: usize,
    },
    #[error("the config nests more than {limit} levels deep (at line {line}); nothing was deployed. No config needs that: look for runaway brackets or indentation near that line")]
    TooDeep { limit: usize, line: usize },
}

/// Refuses `what` (e.g. "the config file") of `bytes` bytes over
/// [`MAX_CONFIG_BYTES`].
pub fn check_config_size(what: &'static str, bytes: usize) -> Result<(), LimitError> {
    if bytes > MAX_CONFIG_BYTES {
        return Err(LimitError::TooLarge {
            what,
            bytes,
            limit: MAX_CONFIG_BYTES,
        });
    }
    Ok(())
}

/// Refuses a YAML (or JSON) text nesting deeper than `limit` levels, in
/// one pass over the text, before a parser sees it. Counts open flow
/// brackets (outside quotes and comments) plus the block levels a line
/// opens (its indentation stack and compact `- ` / `? ` indicators). It
/// may count a level more than a parser would (a scalar after `- `, a
/// block scalar's indented lines), never fewer, so a limit of
/// [`MAX_NESTING`] refuses nothing a real config holds.
pub fn check_nesting(text: &str, limit: usize) -> Result<(), LimitError> {
    let mut flow = 0usize;
    let mut blocks: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    for (number, line) in text.lines().enumerate() {
        let too_deep = |depth: usize| {
            (depth > limit).then_some(LimitError::TooDeep {
                limit,
                line: number + 1,
            })
        };
        let mut start = 0;
        if flow == 0 && quote.is_none() {
            let indent = line.len() - line.trim_start_matches([' ', '\t']).len();
            let rest = &line[indent..];
            if !rest.is_empty() && !rest.starts_with('#') {
                let mut column = indent;
                loop {
                    while blocks.last().is_some_and(|&c| c >= column) {
                        blocks.pop();
                    }
                    blocks.push(column);
                    if let Some(error) = too_deep(blocks.len()) {
                        return Err(error);
                    }
                    let rest = &line[column..];
                    let indicator = rest.starts_with("- ") || rest.starts_with("? ");
                    if !indicator {
                        break;
                    }
                    let after = &rest[2..];
                    column += 2 + (after.len() - after.trim_start_matches([' ', '\t']).len());
                }
                start = column;
            }
        }
        let mut prev = ' ';
        let mut chars = line[start..].chars().peekable();
        while let Some(ch) = chars.next() {
            match quote {
                Some('"') if ch == '\\' => {
                    chars.next();
                }
                Some('\'') if ch == '\'' && chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                Some(q) if ch == q => quote = None,
                Some(_) => {}
                None => match ch {
                    '#' if prev.is_whitespace() => break,
                    '"' | '\'' if prev.is_whitespace() || "[{,:".contains(prev) => quote = Some(ch),
                    '[' | '{' => {
                        flow += 1;
                        if let Some(error) = too_deep(blocks.len() + flow) {
                            return Err(error);
                        }
                    }
                    ']' | '}' => flow = flow.saturating_sub(1),
                    _ => {}
                },
            }
            prev = ch;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_over_the_size_limit_is_refused_saying_what_to_do() {
        assert_eq!(check_config_size("the body", MAX_CONFIG_BYTES), Ok(()));
        let error = check_config_size("the body", MAX_CONFIG_BYTES + 1).unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("the body is 1572865 bytes, over the limit of 1572864"),
            "{text}"
        );
        assert!(text.contains("user_config"), "{text}");
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_in_one_pass_whatever_the_syntax() {
        let deep = 100_000;
        let cases = [
            "[".repeat(deep),
            "{\"a\":".repeat(deep),
            format!("x: {}", "[".repeat(deep)),
            "- ".repeat(deep) + "x",
            (0..deep)
                .map(|i| format!("{}k:\n", " ".repeat(i)))
                .collect(),
        ];
        for text in &cases {
            let error = check_nesting(text, MAX_NESTING).unwrap_err();
            assert!(
                matches!(error, LimitError::TooDeep { limit: 128, .. }),
                "{error}"
            );
        }
        let error = check_nesting(&"[".repeat(deep), MAX_NESTING).unwrap_err();
        assert_eq!(
            error,
            LimitError::TooDeep {
                limit: 128,
                line: 1
            }
        );
        assert!(error
            .to_string()
            .contains("more than 128 levels deep (at line 1)"));
    }

    #[test]
    fn what_a_config_holds_passes_and_brackets_in_strings_and_comments_do_not_count() {
        let config = r#"
# a comment with [[[[ brackets
proxy_location: EveryNode
http_options: {host: "0.0.0.0", port: 8000}
applications:
  - name: app1
    route_prefix: /app1
    app: "hello"
    deployments:
      - name: Model
        num_replicas: 2
        user_config:
          greeting: "[[[[ not { nesting"
          other: 'it''s [[[['
          list: [1, [2, [3]], {a: [4]}]
          text: |
            a block scalar [[[
              indented more
      - name: Other
"#;
        assert_eq!(check_nesting(config, MAX_NESTING), Ok(()));
        let json =
            serde_json::json!({"applications": [{"name": "a", "user_config": {"s": "[[[[{{{{"}}]});
        assert_eq!(check_nesting(&json.to_string(), MAX_NESTING), Ok(()));
        assert_eq!(
            check_nesting(&serde_json::to_string_pretty(&json).unwrap(), MAX_NESTING),
            Ok(())
        );
    }

    #[test]
    fn the_limit_is_the_number_of_levels() {
        let at = |n: usize| "[".repeat(n) + &"]".repeat(n);
        // The line itself is one block level.
        assert_eq!(check_nesting(&at(9), 10), Ok(()));
        assert!(check_nesting(&at(10), 10).is_err());
        let nested_maps: String = (0..9).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
        assert_eq!(check_nesting(&nested_maps, 9), Ok(()));
        assert!(check_nesting(&nested_maps, 8).is_err());
        // Leaving a level frees it.
        let siblings = "a:\n  b: 1\nc:\n  d: 1\n";
        assert_eq!(check_nesting(siblings, 2), Ok(()));
    }
}
