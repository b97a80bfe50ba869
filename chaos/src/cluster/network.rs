//! The cluster's network: every node in its own network namespace with its
//! own address on a bridge the harness creates (so a partition is a real
//! cut), or plain loopback where namespaces cannot be made.
//!
//! Links are cut without netfilter or `tc` (often missing from small
//! kernels): a cut `a → b` pins `b`'s address in `a`'s namespace to a
//! hardware address nobody has (`ip neigh replace … nud permanent`), so
//! `a`'s packets to `b` vanish silently on the bridge, as on a real
//! network that lost a link; the heal deletes the entry and ARP finds the
//! real one again. Link degradation needs `tc netem`, when the kernel has
//! it.

use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};

/// Where the harness process sits: not a node.
pub const CLIENTS: usize = usize::MAX;

/// A hardware address no interface has: packets sent to it are dropped.
const NOWHERE_MAC: &str = "02:00:00:00:00:01";

/// Prefix of every namespace the harness makes (`troupe-chaos-<pid>-…`).
pub const NETNS_PREFIX: &str = "troupe-chaos-";

/// One node's place on the bridge.
#[derive(Clone, Debug)]
pub struct Slot {
    /// The namespace's name.
    pub netns: String,
    /// The veth end inside the namespace.
    pub dev: String,
    /// The node's address.
    pub ip: String,
}

/// Namespaces, veths and a bridge, removed by [`Namespaces::remove`].
#[derive(Debug)]
pub struct Namespaces {
    bridge: String,
    host_ip: String,
    slots: Vec<Slot>,
    /// Cuts in force, as (from, to) with [`CLIENTS`] for the harness.
    cuts: Mutex<Vec<(usize, usize)>>,
    removed: std::sync::atomic::AtomicBool,
}

/// Runs `ip` (or `tc`) with `args`; an error carries its stderr.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn sh_out(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable_reason() -> Option<String> {
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        });
    if euid.as_deref() != Some("0") {
        return Some("network namespaces need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("network namespaces need `ip` (iproute2)".into());
    }
    None
}

/// Whether `tc netem` works on this kernel (tried on a throwaway veth).
pub fn netem_available() -> bool {
    let name = format!("tcnm{}", std::process::id() % 100_000);
    if sh("ip", &["link", "add", &name, "type", "dummy"]).is_err() {
        return false;
    }
    let ok = sh(
        "tc",
        &[
            "qdisc", "add", "dev", &name, "root", "netem", "delay", "1ms",
        ],
    )
    .is_ok();
    let _ = sh("ip", &["link", "del", &name]);
    ok
}

/// Serialises subnet choice across runs in this process.
static SETUP: Mutex<()> = Mutex::new(());

/// Names and a free subnet for run `run` of this process: pure naming, so
/// [`sweep_stale`] can tell whose leftovers it sees.
fn names(pid: u32, run: u32) -> (String, String) {
    let tag = format!("{:x}", (u64::from(pid) << 8) | u64::from(run & 0xff));
    (format!("trb{tag}"), tag)
}

/// The owner pid encoded in a bridge or veth name made by [`names`].
fn owner_of(link: &str) -> Option<u32> {
    let tag = link
        .strip_prefix("trb")
        .or_else(|| link.strip_prefix("trv"))?;
    let hex: String = tag.chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok().map(|v| (v >> 8) as u32)
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces, bridges and processes left by harness runs whose
/// process is gone (one killed with SIGKILL cannot clean up after itself).
pub fn sweep_stale() {
    let listed = sh_out("ip", &["netns", "list"]).unwrap_or_default();
    for line in listed.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if owner.is_some_and(|p| !pid_alive(p)) {
            for pid in sh_out("ip", &["netns", "pids", name])
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = sh("kill", &["-CONT", pid]);
                let _ = sh("kill", &["-KILL", pid]);
            }
            let _ = sh("ip", &["netns", "del", name]);
        }
    }
    let links = sh_out("ip", &["-o", "link", "show"]).unwrap_or_default();
    for line in links.lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or(""))
        else {
            continue;
        };
        if !(name.starts_with("trb") || name.starts_with("trv")) {
            continue;
        }
        if owner_of(name).is_some_and(|p| !pid_alive(p)) {
            let _ = sh("ip", &["link", "del", name]);
        }
    }
}

impl Namespaces {
    /// Makes `nodes` namespaces on a new bridge.
    pub fn create(nodes: usize, run: u32) -> anyhow::Result<Namespaces> {
        let _guard = SETUP.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        let (bridge, tag) = names(pid, run);
        let used = sh_out("ip", &["-4", "-o", "addr", "show"])? + &sh_out("ip", &["-4", "route"])?;
        let octet = (0..250u32)
            .map(|i| 10 + (pid + run + i) % 240)
            .find(|o| !used.contains(&format!("10.217.{o}.")))
            .context("no free 10.217.x.0/24 subnet for the cluster's bridge")?;
        let host_ip = format!("10.217.{octet}.1");
        let mut made = Namespaces {
            bridge: bridge.clone(),
            host_ip: host_ip.clone(),
            slots: Vec::new(),
            cuts: Mutex::new(Vec::new()),
            removed: std::sync::atomic::AtomicBool::new(false),
        };
        // On any error `made` is dropped half-built: remove what exists.
        let build = |made: &mut Namespaces| -> anyhow::Result<()> {
            sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
            sh(
                "ip",
                &["addr", "add", &format!("{host_ip}/24"), "dev", &bridge],
            )?;
            sh("ip", &["link", "set", &bridge, "up"])?;
            for i in 0..nodes {
                let netns = format!("{NETNS_PREFIX}{pid}-{run}-n{i}");
                let (host_dev, dev) = (format!("trv{tag}h{i}"), format!("trv{tag}p{i}"));
                let ip = format!("10.217.{octet}.{}", 10 + i);
                sh("ip", &["netns", "add", &netns])?;
                made.slots.push(Slot {
                    netns: netns.clone(),
                    dev: dev.clone(),
                    ip: ip.clone(),
                });
                sh(
                    "ip",
                    &[
                        "link", "add", &host_dev, "type", "veth", "peer", "name", &dev,
                    ],
                )?;
                sh("ip", &["link", "set", &dev, "netns", &netns])?;
                sh("ip", &["link", "set", &host_dev, "master", &bridge, "up"])?;
                sh(
                    "ip",
                    &[
                        "-n",
                        &netns,
                        "addr",
                        "add",
                        &format!("{ip}/24"),
                        "dev",
                        &dev,
                    ],
                )?;
                sh("ip", &["-n", &netns, "link", "set", &dev, "up"])?;
                sh("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
            }
            Ok(())
        };
        if let Err(e) = build(&mut made) {
            made.remove();
            return Err(e);
        }
        Ok(made)
    }

    /// Node `i`'s slot.
    pub fn slot(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The harness's address on the bridge.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    fn ip_of(&self, end: usize) -> &str {
        if end == CLIENTS {
            &self.host_ip
        } else {
            &self.slots[end].ip
        }
    }

    /// `ip` arguments that run in `from`'s namespace, for the device that
    /// reaches the bridge.
    fn neigh_args(&self, from: usize, op: &'static str, to: usize) -> Vec<String> {
        let target = self.ip_of(to).to_owned();
        let mut args: Vec<String> = Vec::new();
        let dev = if from == CLIENTS {
            self.bridge.clone()
        } else {
            args.extend(["-n".into(), self.slots[from].netns.clone()]);
            self.slots[from].dev.clone()
        };
        args.extend(["neigh".into(), op.into(), target]);
        if op == "replace" {
            args.extend(["lladdr".into(), NOWHERE_MAC.into()]);
        }
        args.extend(["dev".into(), dev]);
        if op == "replace" {
            args.extend(["nud".into(), "permanent".into()]);
        }
        args
    }

    /// Drops every packet from `from` to `to` ([`CLIENTS`] for the harness).
    pub fn cut(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let args = self.neigh_args(from, "replace", to);
        sh("ip", &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        self.cuts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((from, to));
        Ok(())
    }

    /// Restores the link from `from` to `to`.
    pub fn restore(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let args = self.neigh_args(from, "del", to);
        let result = sh("ip", &args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut cuts = self.cuts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = cuts.iter().position(|c| *c == (from, to)) {
            cuts.remove(at);
        }
        result
    }

    /// Adds delay, jitter and loss to everything node `i` sends.
    pub fn degrade(
        &self,
        i: usize,
        delay_ms: u64,
        jitter_ms: u64,
        loss_pct: f64,
    ) -> anyhow::Result<()> {
        let slot = &self.slots[i];
        let (delay, jitter, loss) = (
            format!("{delay_ms}ms"),
            format!("{jitter_ms}ms"),
            format!("{loss_pct}%"),
        );
        sh(
            "tc",
            &[
                "-n",
                &slot.netns,
                "qdisc",
                "replace",
                "dev",
                &slot.dev,
                "root",
                "netem",
                "delay",
                &delay,
                &jitter,
                "loss",
                &loss,
            ],
        )
    }

    /// Removes node `i`'s degradation.
    pub fn undegrade(&self, i: usize) -> anyhow::Result<()> {
        let slot = &self.slots[i];
        sh(
            "tc",
            &["-n", &slot.netns, "qdisc", "del", "dev", &slot.dev, "root"],
        )
    }

    /// Processes still running inside node `i`'s namespace.
    pub fn pids(&self, i: usize) -> Vec<u32> {
        sh_out("ip", &["netns", "pids", &self.slots[i].netns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Deletes every namespace and the bridge (their veths go with them).
    pub fn remove(&self) {
        if self.removed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        for slot in &self.slots {
            let _ = sh("ip", &["netns", "del", &slot.netns]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge]);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        let (bridge, tag) = names(4_194_303, 7);
        assert!(bridge.len() <= 15, "{bridge}");
        assert!(format!("trv{tag}h12").len() <= 15);
        assert_eq!(owner_of(&bridge), Some(4_194_303));
        assert_eq!(owner_of(&format!("trv{tag}h3")), Some(4_194_303));
        assert_eq!(owner_of(&format!("trv{tag}p11")), Some(4_194_303));
        assert_eq!(owner_of("eth0"), None);
    }
}
