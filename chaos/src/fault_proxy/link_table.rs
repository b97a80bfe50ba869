//! [`LinkTable`]: one [`FaultProxy`] per directed link between members.

use std::io;
use std::net::SocketAddr;

use super::{FaultProxy, Mode};

/// Why [`LinkTable::partition`] rejected its groups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// A group names a member index that does not exist.
    #[error("member {member} does not exist (the table has {members} members)")]
    UnknownMember {
        /// The offending index.
        member: usize,
        /// How many members the table has.
        members: usize,
    },
    /// A member appears more than once.
    #[error("member {member} is in more than one group")]
    Repeated {
        /// The offending index.
        member: usize,
    },
    /// A member is in no group.
    #[error("member {member} is in no group")]
    Missing {
        /// The offending index.
        member: usize,
    },
}

/// One proxy per directed link `from → to` (`from != to`) among `n`
/// members, identified by index `0..n`. Member `from` dials member `to` at
/// [`LinkTable::addr(from, to)`](LinkTable::addr); that proxy forwards to
/// `to`'s upstream address. The table knows nothing about what the members
/// speak.
///
/// Methods taking member indexes panic if an index is out of range or
/// `from == to`, like slice indexing.
#[derive(Debug)]
pub struct LinkTable {
    members: usize,
    /// Row-major `from * members + to`; `None` on the diagonal.
    links: Vec<Option<FaultProxy>>,
}

impl LinkTable {
    /// Start one proxy on `127.0.0.1:0` per directed link, all in
    /// [`Mode::Pass`]; `upstreams[i]` is where member `i` listens.
    pub async fn start(upstreams: &[SocketAddr]) -> io::Result<Self> {
        let members = upstreams.len();
        let mut links = Vec::with_capacity(members * members);
        for from in 0..members {
            for (to, &upstream) in upstreams.iter().enumerate() {
                links.push(if from == to {
                    None
                } else {
                    Some(FaultProxy::start("127.0.0.1:0", upstream).await?)
                });
            }
        }
        Ok(Self { members, links })
    }

    /// How many members the table links.
    pub fn members(&self) -> usize {
        self.members
    }

    /// The proxy on link `from → to`.
    pub fn link(&self, from: usize, to: usize) -> &FaultProxy {
        assert!(
            from < self.members && to < self.members && from != to,
            "no link {from} -> {to} among {} members",
            self.members
        );
        self.links[from * self.members + to]
            .as_ref()
            .expect("off-diagonal links exist")
    }

    /// The address member `from` dials to reach member `to`.
    pub fn addr(&self, from: usize, to: usize) -> SocketAddr {
        self.link(from, to).addr()
    }

    /// Every link as `(from, to, proxy)`.
    pub fn links(&self) -> impl Iterator<Item = (usize, usize, &FaultProxy)> + '_ {
        self.links.iter().enumerate().filter_map(|(index, link)| {
            link.as_ref()
                .map(|proxy| (index / self.members, index % self.members, proxy))
        })
    }

    /// Set the mode of link `from → to` only.
    pub fn set_link(&self, from: usize, to: usize, mode: Mode) {
        self.link(from, to).set_mode(mode);
    }

    /// Blackhole every link into and out of `member`; other links keep
    /// their mode.
    pub fn isolate(&self, member: usize) {
        self.isolate_with(member, Mode::Blackhole);
    }

    /// Set every link into and out of `member` to `cut` (e.g.
    /// [`Mode::Refuse`]); other links keep their mode.
    pub fn isolate_with(&self, member: usize, cut: Mode) {
        assert!(
            member < self.members,
            "member {member} does not exist (the table has {} members)",
            self.members
        );
        for (from, to, proxy) in self.links() {
            if from == member || to == member {
                proxy.set_mode(cut);
            }
        }
    }

    /// Blackhole every link between different groups and set every link
    /// within a group to [`Mode::Pass`]. The groups must be disjoint and
    /// cover every member exactly once; otherwise nothing changes.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<(), PartitionError> {
        self.partition_with(groups, Mode::Blackhole)
    }

    /// As [`LinkTable::partition`], cutting with `cut` instead.
    pub fn partition_with(&self, groups: &[&[usize]], cut: Mode) -> Result<(), PartitionError> {
        let group_of = group_of(self.members, groups)?;
        for (from, to, proxy) in self.links() {
            proxy.set_mode(if group_of[from] == group_of[to] {
                Mode::Pass
            } else {
                cut
            });
        }
        Ok(())
    }

    /// Set every link to [`Mode::Pass`].
    pub fn heal(&self) {
        for (_, _, proxy) in self.links() {
            proxy.set_mode(Mode::Pass);
        }
    }

    /// Shut every proxy down and wait for all of them (see
    /// [`FaultProxy::shutdown`]).
    pub async fn shutdown(self) {
        for proxy in self.links.into_iter().flatten() {
            proxy.shutdown().await;
        }
    }
}

/// Map each member to the index of its group, checking that `groups`
/// partitions `0..members`.
fn group_of(members: usize, groups: &[&[usize]]) -> Result<Vec<usize>, PartitionError> {
    let mut group_of = vec![None; members];
    for (group, &listed) in groups.iter().enumerate() {
        for &member in listed {
            let slot = group_of
                .get_mut(member)
                .ok_or(PartitionError::UnknownMember { member, members })?;
            if slot.replace(group).is_some() {
                return Err(PartitionError::Repeated { member });
            }
        }
    }
    group_of
        .into_iter()
        .enumerate()
        .map(|(member, group)| group.ok_or(PartitionError::Missing { member }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_members_to_their_group() {
        assert_eq!(group_of(4, &[&[2, 0], &[1], &[3]]), Ok(vec![0, 1, 0, 2]));
    }

    #[test]
    fn groups_must_partition_the_members() {
        assert_eq!(
            group_of(3, &[&[0, 1], &[3]]),
            Err(PartitionError::UnknownMember {
                member: 3,
                members: 3
            })
        );
        assert_eq!(
            group_of(3, &[&[0, 1], &[1, 2]]),
            Err(PartitionError::Repeated { member: 1 })
        );
        assert_eq!(
            group_of(3, &[&[0], &[2]]),
            Err(PartitionError::Missing { member: 1 })
        );
    }
}
