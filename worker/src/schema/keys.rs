//! The GCS key layout of the node layer. Keys are UTF-8 paths:
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `/troupe/nodes/<node-id>` | [`NodeRecord`](super::NodeRecord) | the node, under its lease |
//! | `/troupe/actors/<actor-id>` | [`ActorRecord`](super::ActorRecord) | the scheduler |
//! | `/troupe/actor-names/<namespace>/<name>` | [`ActorNameRecord`](super::ActorNameRecord) | the scheduler |
//! | `/troupe/assignments/<node-id>/<actor-id>` | [`AssignmentRecord`](super::AssignmentRecord) | the scheduler; the node watches its prefix |
//! | `/troupe/controller-term` | [`ControllerTermRecord`](super::ControllerTermRecord) | the controllers' leader |
//! | `/troupe/reports/<node-id>/<actor-id>` | [`ReportRecord`](super::ReportRecord) | the node, under its lease |
//! | `/troupe/owners/<node-id>` | empty | a node or driver process that may own actors, under its lease |
//!
//! Ids use their text form (`node-00000000deadbeef`), so keys sort by id
//! and read well in `troupe gcs` listings.

use std::fmt;

use troupe_core::id::{ActorId, NodeId};

use super::{ActorName, SchemaError};

/// The root of every key the node layer writes.
pub const ROOT: &str = "/troupe/";
/// Prefix of the node records.
pub const NODES_PREFIX: &str = "/troupe/nodes/";
/// Prefix of the actor records.
pub const ACTORS_PREFIX: &str = "/troupe/actors/";
/// Prefix of the actor names.
pub const ACTOR_NAMES_PREFIX: &str = "/troupe/actor-names/";
/// Prefix of all assignments; see [`assignments_of`] for one node's.
pub const ASSIGNMENTS_PREFIX: &str = "/troupe/assignments/";
/// Prefix of the nodes' reports on the actors they host.
pub const REPORTS_PREFIX: &str = "/troupe/reports/";
/// Prefix of the live owner processes (nodes and drivers).
pub const OWNERS_PREFIX: &str = "/troupe/owners/";
/// The controllers' fencing key.
pub const CONTROLLER_TERM_KEY: &str = "/troupe/controller-term";

/// The longest name or namespace, in bytes.
const MAX_SEGMENT_BYTES: usize = 255;

/// The prefix a node watches for its assignments:
/// `/troupe/assignments/<node-id>/`.
pub fn assignments_of(node: NodeId) -> String {
    format!("{ASSIGNMENTS_PREFIX}{node}/")
}

/// The prefix of the names in one namespace: `/troupe/actor-names/<ns>/`.
pub fn actor_names_in(namespace: &str) -> Result<String, SchemaError> {
    check_segment("actor namespace", namespace)?;
    Ok(format!("{ACTOR_NAMES_PREFIX}{namespace}/"))
}

/// One key of the node layer, parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Node(NodeId),
    Actor(ActorId),
    ActorName(ActorName),
    Assignment { node: NodeId, actor: ActorId },
    ControllerTerm,
    Report { node: NodeId, actor: ActorId },
    Owner(NodeId),
}

impl Key {
    /// The key as stored in the GCS.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses a stored key, rejecting anything that is not exactly one of
    /// the layouts above.
    pub fn parse(bytes: &[u8]) -> Result<Self, SchemaError> {
        let text = String::from_utf8_lossy(bytes);
        let fail = |problem: String| SchemaError::MalformedKey {
            key: text.clone().into_owned(),
            problem,
        };
        let text_ref = std::str::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
        let rest = text_ref
            .strip_prefix(ROOT)
            .ok_or_else(|| fail(format!("does not start with {ROOT:?}")))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let expect = |layout: &str| fail(format!("expected {ROOT}{layout}"));
        let key = match segments.as_slice() {
            ["nodes", node] => Self::Node(parse_id(node).map_err(fail)?),
            ["nodes", ..] => return Err(expect("nodes/<node-id>")),
            ["actors", actor] => Self::Actor(parse_id(actor).map_err(fail)?),
            ["actors", ..] => return Err(expect("actors/<actor-id>")),
            ["actor-names", namespace, name] => {
                Self::ActorName(ActorName::new(*namespace, *name).map_err(|e| fail(e.to_string()))?)
            }
            ["actor-names", ..] => return Err(expect("actor-names/<namespace>/<name>")),
            ["assignments", node, actor] => Self::Assignment {
                node: parse_id(node).map_err(fail)?,
                actor: parse_id(actor).map_err(fail)?,
            },
            ["assignments", ..] => return Err(expect("assignments/<node-id>/<actor-id>")),
            ["controller-term"] => Self::ControllerTerm,
            ["reports", node, actor] => Self::Report {
                node: parse_id(node).map_err(fail)?,
                actor: parse_id(actor).map_err(fail)?,
            },
            ["reports", ..] => return Err(expect("reports/<node-id>/<actor-id>")),
            ["owners", owner] => Self::Owner(parse_id(owner).map_err(fail)?),
            ["owners", ..] => return Err(expect("owners/<node-id>")),
            _ => {
                return Err(fail(
                    "unknown table; expected one of nodes/, actors/, actor-names/, \
                     assignments/, controller-term, reports/, owners/"
                        .into(),
                ))
            }
        };
        Ok(key)
    }
}

/// An id from its text form, the parse error as text.
fn parse_id<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = troupe_core::id::ParseIdError>,
{
    text.parse()
        .map_err(|e: troupe_core::id::ParseIdError| e.to_string())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(node) => write!(f, "{NODES_PREFIX}{node}"),
            Self::Actor(actor) => write!(f, "{ACTORS_PREFIX}{actor}"),
            Self::ActorName(name) => write!(
                f,
                "{ACTOR_NAMES_PREFIX}{}/{}",
                name.namespace(),
                name.name()
            ),
            Self::Assignment { node, actor } => write!(f, "{}{actor}", assignments_of(*node)),
            Self::ControllerTerm => f.write_str(CONTROLLER_TERM_KEY),
            Self::Report { node, actor } => write!(f, "{REPORTS_PREFIX}{node}/{actor}"),
            Self::Owner(owner) => write!(f, "{OWNERS_PREFIX}{owner}"),
        }
    }
}

/// Checks that `value` can be one key segment: non-empty, at most 255
/// bytes, no `/`, no control characters.
pub(super) fn check_segment(what: &'static str, value: &str) -> Result<(), SchemaError> {
    let problem = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_SEGMENT_BYTES {
        "must be at most 255 bytes long"
    } else if value.contains('/') {
        "must not contain '/'"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(SchemaError::InvalidName {
        what,
        value: value.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        NodeId::new(0xdead_beef)
    }

    fn actor() -> ActorId {
        ActorId::new(7)
    }

    #[test]
    fn every_key_prints_its_layout_and_parses_back() {
        let keys = [
            (Key::Node(node()), "/troupe/nodes/node-00000000deadbeef"),
            (Key::Actor(actor()), "/troupe/actors/actor-0000000000000007"),
            (
                Key::ActorName(ActorName::new("prod", "counter").unwrap()),
                "/troupe/actor-names/prod/counter",
            ),
            (
                Key::Assignment {
                    node: node(),
                    actor: actor(),
                },
                "/troupe/assignments/node-00000000deadbeef/actor-0000000000000007",
            ),
            (Key::ControllerTerm, "/troupe/controller-term"),
        ];
        for (key, text) in keys {
            assert_eq!(key.to_string(), text);
            assert_eq!(Key::parse(&key.to_bytes()), Ok(key));
        }
    }

    #[test]
    fn assignment_keys_live_under_their_nodes_prefix() {
        let key = Key::Assignment {
            node: node(),
            actor: actor(),
        }
        .to_string();
        assert!(key.starts_with(&assignments_of(node())));
        assert!(!key.starts_with(&assignments_of(NodeId::new(0xdead))));
        assert_eq!(actor_names_in("prod").unwrap(), "/troupe/actor-names/prod/");
        assert!(actor_names_in("a/b").is_err());
    }

    #[test]
    fn malformed_keys_are_rejected_with_what_was_expected() {
        let cases = [
            (
                "/other/nodes/node-00000000deadbeef",
                "does not start with \"/troupe/\"",
            ),
            ("/troupe/nodes/", "invalid NodeId \"\""),
            (
                "/troupe/nodes/actor-0000000000000007",
                "wrong or missing prefix",
            ),
            (
                "/troupe/nodes/node-00000000deadbeef/x",
                "expected /troupe/nodes/<node-id>",
            ),
            ("/troupe/actors", "expected /troupe/actors/<actor-id>"),
            (
                "/troupe/actor-names/prod",
                "expected /troupe/actor-names/<namespace>/<name>",
            ),
            (
                "/troupe/actor-names/prod/",
                "invalid actor name \"\": must not be empty",
            ),
            (
                "/troupe/assignments/node-00000000deadbeef",
                "assignments/<node-id>/<actor-id>",
            ),
            ("/troupe/controller-term/1", "unknown table"),
            ("/troupe/replicas/x", "unknown table"),
        ];
        for (key, expected) in cases {
            let err = Key::parse(key.as_bytes()).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("malformed GCS key {key:?}")),
                "{err}"
            );
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
        let err = Key::parse(b"/troupe/\xff").unwrap_err().to_string();
        assert!(err.ends_with("not UTF-8"), "{err}");
    }

    #[test]
    fn names_must_be_single_printable_segments() {
        let long = "x".repeat(256);
        for (name, problem) in [
            ("", "must not be empty"),
            ("a/b", "must not contain '/'"),
            ("a\nb", "must not contain control characters"),
            (long.as_str(), "must be at most 255 bytes long"),
        ] {
            let err = ActorName::in_default(name).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid actor name {name:?}: {problem}")
            );
        }
        assert!(ActorName::in_default("x".repeat(255)).is_ok());
        assert!(ActorName::new("", "a").is_err());
    }
}
