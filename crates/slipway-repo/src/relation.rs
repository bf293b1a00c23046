//! Debian relation fields (`Depends`, `Provides`): `a (>= 1) | b, c`.

/// A version constraint operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationOp {
    /// `<<`
    Less,
    /// `<=`
    LessEq,
    /// `=`
    Eq,
    /// `>=`
    GreaterEq,
    /// `>>`
    Greater,
}

/// One alternative of a relation: a package name with an optional version constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The package name, without an architecture qualifier.
    pub name: String,
    /// The version constraint, if any.
    pub constraint: Option<(RelationOp, String)>,
}

/// Parses a relation field into groups of alternatives.
pub fn parse_relations(field: &str) -> Vec<Vec<Relation>> {
    let _ = field;
    Vec::new()
}
