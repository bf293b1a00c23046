//! Debian relation fields (`Depends`, `Provides`): `a (>= 1) | b:any, c [amd64] <!nocheck>`.

use std::cmp::Ordering;

use crate::version::{compare_versions, VersionScheme};

/// A version constraint operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationOp {
    /// `<<`
    Less,
    /// `<=` (also the obsolete `<`)
    LessEq,
    /// `=`
    Eq,
    /// `>=` (also the obsolete `>`)
    GreaterEq,
    /// `>>`
    Greater,
}

impl RelationOp {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "<<" => Self::Less,
            "<=" | "<" => Self::LessEq,
            "=" => Self::Eq,
            ">=" | ">" => Self::GreaterEq,
            ">>" => Self::Greater,
            _ => return None,
        })
    }

    /// Whether `version` satisfies `self wanted` under `scheme`.
    pub fn allows(self, scheme: VersionScheme, version: &str, wanted: &str) -> bool {
        let order = compare_versions(scheme, version, wanted);
        match self {
            Self::Less => order == Ordering::Less,
            Self::LessEq => order != Ordering::Greater,
            Self::Eq => order == Ordering::Equal,
            Self::GreaterEq => order != Ordering::Less,
            Self::Greater => order == Ordering::Greater,
        }
    }
}

/// One alternative of a relation: a package name with an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The package name, without an architecture qualifier.
    pub name: String,
    /// The version constraint, if any.
    pub constraint: Option<(RelationOp, String)>,
}

/// Parses a relation field into groups of alternatives (`a | b, c` is `[[a, b], [c]]`). Architecture
/// qualifiers (`:any`), architecture lists (`[amd64]`) and build profiles (`<!nocheck>`) are dropped: they
/// matter for building packages, not for installing them on one architecture.
pub fn parse_relations(field: &str) -> Vec<Vec<Relation>> {
    field
        .split(',')
        .filter_map(|group| {
            let alternatives: Vec<Relation> = group.split('|').filter_map(parse_one).collect();
            (!alternatives.is_empty()).then_some(alternatives)
        })
        .collect()
}

fn parse_one(text: &str) -> Option<Relation> {
    let text = text.trim();
    let name_end = text
        .find(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<')
        .unwrap_or(text.len());
    let name = text[..name_end].split(':').next().unwrap_or_default();
    if name.is_empty() {
        return None;
    }
    let constraint = text[name_end..]
        .find('(')
        .and_then(|start| {
            let rest = &text[name_end + start + 1..];
            let end = rest.find(')')?;
            Some(rest[..end].trim())
        })
        .and_then(|inner| {
            let op_end = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .unwrap_or(inner.len());
            let op = RelationOp::parse(&inner[..op_end])?;
            let version = inner[op_end..].trim();
            (!version.is_empty()).then(|| (op, version.to_string()))
        });
    Some(Relation {
        name: name.to_string(),
        constraint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_alternatives_and_constraints() {
        let parsed = parse_relations(
            "libc6 (>= 2.34), default-mta | mail-transport-agent, python3:any (<< 3.12) [amd64], foo <!nocheck>",
        );
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[0][0].name, "libc6");
        assert_eq!(
            parsed[0][0].constraint,
            Some((RelationOp::GreaterEq, "2.34".to_string()))
        );
        assert_eq!(parsed[1].len(), 2);
        assert_eq!(parsed[1][1].name, "mail-transport-agent");
        assert_eq!(parsed[2][0].name, "python3");
        assert_eq!(
            parsed[2][0].constraint,
            Some((RelationOp::Less, "3.12".to_string()))
        );
        assert_eq!(parsed[3][0].name, "foo");
        assert!(parsed[3][0].constraint.is_none());
        assert!(parse_relations("").is_empty());
        assert!(parse_relations(" , ").is_empty());
    }

    #[test]
    fn operators_allow_the_right_versions() {
        let d = VersionScheme::Debian;
        assert!(RelationOp::GreaterEq.allows(d, "2.36-9", "2.34"));
        assert!(!RelationOp::Less.allows(d, "3.12", "3.12"));
        assert!(RelationOp::LessEq.allows(d, "3.12", "3.12"));
        assert!(RelationOp::Eq.allows(d, "1:1.0", "1:1.0"));
        assert!(!RelationOp::Greater.allows(d, "1.0~rc1", "1.0"));
    }
}
