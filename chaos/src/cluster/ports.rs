//! Fixed loopback ports for node processes that must come back at the same
//! address (a GCS member is named by its address; a restarted node rebinds
//! its proxy and admin API).
//!
//! Binding port 0 and closing the socket hands out a port that is free
//! *now* and nothing more: the kernel may give the same port to the next
//! `bind(0)` of this or any other process, or to an outgoing connection,
//! before the node binds it. CI met exactly that: two nodes of one cluster
//! were handed the same port and the second failed with "Address already in
//! use". A [`PortLease`] avoids all three ways:
//!
//! - ports come from **below the kernel's ephemeral range**
//!   (`net.ipv4.ip_local_port_range`), which `bind(0)` and outgoing
//!   connections never take;
//! - each port is claimed with an **exclusive `flock`** on
//!   `$TMPDIR/troupe-ports/<port>.lock`, held for the lease's lifetime, so
//!   two harnesses (parallel tests, a bench next to a chaos run) never
//!   share a port; the kernel drops the lock when the process dies;
//! - a port is taken only if **binding it succeeds** at lease time, which
//!   skips anything another program holds.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

/// The ephemeral range Linux uses when it cannot be read.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);

/// The lowest port a lease hands out (well above the registered services
/// people run on development machines: 5432, 6379, 8000, 8080, 9090 ...).
const LOWEST: u16 = 10000;

/// Ports held for one cluster: the locks go when it is dropped.
#[derive(Debug)]
pub struct PortLease {
    ports: Vec<u16>,
    _locks: Vec<Flock<File>>,
}

impl PortLease {
    /// `n` distinct ports, each bindable on 127.0.0.1 now and claimed
    /// against every other lease on this machine.
    pub fn take(n: usize) -> anyhow::Result<PortLease> {
        let range = candidate_range(ephemeral_range());
        let dir = lock_dir();
        shared_dir(&dir)?;
        let span = u32::from(*range.end()) - u32::from(*range.start()) + 1;
        let start = rand::rng().random_range(0..span);
        let mut ports = Vec::with_capacity(n);
        let mut locks = Vec::with_capacity(n);
        for step in 0..span {
            if ports.len() == n {
                break;
            }
            let port = (u32::from(*range.start()) + (start + step) % span) as u16;
            if let Some(lock) = claim(&dir, port)? {
                ports.push(port);
                locks.push(lock);
            }
        }
        if ports.len() < n {
            bail!(
                "only {} of {n} free ports in {}..={} on 127.0.0.1 (locks in {}); stop other \
                 clusters or remove stale processes holding them",
                ports.len(),
                range.start(),
                range.end(),
                dir.display()
            );
        }
        Ok(PortLease {
            ports,
            _locks: locks,
        })
    }

    /// The ports, in the order they were taken.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }
}

/// Locks `port`'s file and checks the port binds; `None` when another
/// lease or program has it.
fn claim(dir: &Path, port: u16) -> anyhow::Result<Option<Flock<File>>> {
    let path = dir.join(format!("{port}.lock"));
    // Read-only is enough for flock, and opens a lock file another user
    // made; a missing one is created.
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating the port lock {}", path.display()))?,
        Err(e) => {
            return Err(e).with_context(|| format!("opening the port lock {}", path.display()))
        }
    };
    let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
        return Ok(None);
    };
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_listener) => Ok(Some(lock)),
        Err(_) => Ok(None),
    }
}

/// Makes the lock directory, shared by every user like `/tmp` itself
/// (world-writable, sticky): a bench run as root must not lock a later
/// user's runs out.
fn shared_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the port lock directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o7777 != 0o1777 {
        // Only its owner may change it; for anyone else it is already
        // whatever its owner made it.
        match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)) {
            Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => {
                return Err(e)
                    .with_context(|| format!("sharing the port lock directory {}", dir.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("troupe-ports")
}

/// The kernel's ephemeral port range, or Linux's default.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| parse_port_range(&s))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// `"32768\t60999\n"` → `(32768, 60999)`.
fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut words = text.split_whitespace();
    let low = words.next()?.parse().ok()?;
    let high = words.next()?.parse().ok()?;
    (low <= high && words.next().is_none()).then_some((low, high))
}

/// Where leased ports come from: the larger gap outside the ephemeral
/// range above [`LOWEST`], or everything above it when the ephemeral range
/// leaves no gap of a thousand ports (locks and the bind check still keep
/// leases apart there).
fn candidate_range((low, high): (u16, u16)) -> RangeInclusive<u16> {
    const ENOUGH: u32 = 1000;
    let below = u32::from(low.saturating_sub(1)).saturating_sub(u32::from(LOWEST)) + 1;
    let below = if low > LOWEST { below } else { 0 };
    let above = if high < u16::MAX {
        u32::from(u16::MAX - high)
    } else {
        0
    };
    if below >= ENOUGH && below >= above {
        LOWEST..=low - 1
    } else if above >= ENOUGH {
        high.max(LOWEST - 1) + 1..=u16::MAX
    } else {
        LOWEST..=u16::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_file() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range("60999 32768"), None);
        assert_eq!(parse_port_range("32768"), None);
        assert_eq!(parse_port_range("a b"), None);
        assert_eq!(parse_port_range("1 2 3"), None);
    }

    #[test]
    fn ports_come_from_outside_the_ephemeral_range() {
        // Linux's default: everything below it.
        assert_eq!(candidate_range((32768, 60999)), 10000..=32767);
        // Windows-like high range: still below.
        assert_eq!(candidate_range((49152, 65535)), 10000..=49151);
        // A low ephemeral range leaves room only above it.
        assert_eq!(candidate_range((1024, 40000)), 40001..=65535);
        // No gap large enough anywhere: all of it, locks keep leases apart.
        assert_eq!(candidate_range((1024, 65000)), 10000..=65535);
        assert_eq!(candidate_range((10500, 65535)), 10000..=65535);
    }

    #[test]
    fn leases_never_share_a_port_and_release_on_drop() {
        let a = PortLease::take(8).unwrap();
        let b = PortLease::take(8).unwrap();
        let mut all: Vec<u16> = a.ports().iter().chain(b.ports()).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 16, "two live leases share no port");
        let range = candidate_range(ephemeral_range());
        assert!(all.iter().all(|p| range.contains(p)));
        // Another holder of a leased port's lock is refused it.
        let dir = lock_dir();
        let port = a.ports()[0];
        assert!(
            claim(&dir, port).unwrap().is_none(),
            "a held lock is not claimed twice"
        );
        drop(a);
        assert!(
            claim(&dir, port).unwrap().is_some(),
            "a dropped lease's ports can be claimed again"
        );
    }

    #[test]
    fn the_lock_directory_is_shared_by_every_user() {
        use std::os::unix::fs::PermissionsExt;
        let _lease = PortLease::take(1).unwrap();
        let mode = std::fs::metadata(lock_dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o1777, "{mode:o}");
    }

    #[test]
    fn a_port_someone_listens_on_is_skipped() {
        let lease = PortLease::take(1).unwrap();
        let port = lease.ports()[0];
        let _holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
        drop(lease);
        assert!(
            claim(&lock_dir(), port).unwrap().is_none(),
            "a bound port is not leased even when its lock is free"
        );
    }
}
