//! Why an update was refused. A refused update changes nothing: a
//! transaction that returns an error is discarded whole.

use crate::types::NodeId;
use core::fmt;
use ipnet::IpNet;

/// An update the tables refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A prefix with bits set past its length (`10.244.1.5/26`).
    HostBitsSet {
        /// The prefix as given.
        prefix: IpNet,
    },
    /// A block or endpoint for a node the tables do not know.
    UnknownNode {
        /// The node named.
        node: NodeId,
    },
    /// The local node's record cannot be removed.
    LocalNode,
    /// A table reached its configured capacity.
    Full {
        /// Which table.
        table: &'static str,
        /// Its capacity.
        limit: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::HostBitsSet { prefix } => write!(
                f,
                "prefix {prefix} has host bits set (did you mean {}?)",
                prefix.trunc()
            ),
            Error::UnknownNode { node } => write!(f, "unknown node {node}"),
            Error::LocalNode => f.write_str("the local node's record cannot be removed"),
            Error::Full { table, limit } => write!(f, "{table} table full ({limit} entries)"),
        }
    }
}

impl std::error::Error for Error {}

/// Result with this crate's [`Error`].
pub type Result<T> = core::result::Result<T, Error>;
