//! The privileged fault tools: one network namespace per node with a real
//! kernel cut between them, and a small tmpfs for a data dir that fills
//! up. Each is removed by its guard, also when a test panics.

use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Runs a command, panicking loudly (with its output) when it fails.
pub fn sh(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}): {}{}\n(these tests need root; set QUORUMKMS_PRIVILEGED_TESTS=0 to leave them out)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command for clean-up, ignoring failures.
fn sh_quiet(program: &str, args: &[&str]) {
    let _ = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Network namespaces, one per node, on one bridge (in a namespace of its
/// own, so the host's firewall never sees the bridged traffic). The host
/// reaches the bridge through a veth with address `.1`: validators listen
/// there and the admin API is reached from there. Node `i` has `.(10+i)`.
pub struct Net {
    tag: String,
    prefix: String,
    nodes: usize,
}

impl Net {
    /// Creates the namespaces and links. Panics (after cleaning up) when
    /// the environment does not allow it.
    pub fn new(nodes: usize) -> Net {
        let pid = std::process::id();
        let net = Net {
            tag: format!("qk{pid}"),
            prefix: format!("10.{}.{}", 100 + (pid >> 8) % 100, pid % 256),
            nodes,
        };
        let lan = net.lan();
        sh("ip", &["netns", "add", &lan]);
        sh("ip", &["-n", &lan, "link", "add", "br0", "type", "bridge"]);
        sh("ip", &["-n", &lan, "link", "set", "br0", "up"]);
        let host = format!("{}h", net.tag);
        sh(
            "ip",
            &[
                "link", "add", &host, "type", "veth", "peer", "name", "hostport",
            ],
        );
        sh("ip", &["link", "set", "hostport", "netns", &lan]);
        sh(
            "ip",
            &["-n", &lan, "link", "set", "hostport", "master", "br0", "up"],
        );
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", net.host_ip()),
                "dev",
                &host,
            ],
        );
        sh("ip", &["link", "set", &host, "up"]);
        for i in 1..=nodes {
            let ns = net.ns(i);
            let (inner, outer) = (format!("{}a{i}", net.tag), format!("{}b{i}", net.tag));
            sh("ip", &["netns", "add", &ns]);
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"]);
            sh(
                "ip",
                &[
                    "link", "add", &inner, "type", "veth", "peer", "name", &outer,
                ],
            );
            sh("ip", &["link", "set", &inner, "netns", &ns]);
            sh("ip", &["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            sh(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", net.node_ip(i)),
                    "dev",
                    "eth0",
                ],
            );
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            sh("ip", &["link", "set", &outer, "netns", &lan]);
            sh(
                "ip",
                &["-n", &lan, "link", "set", &outer, "master", "br0", "up"],
            );
        }
        net
    }

    fn lan(&self) -> String {
        format!("{}-lan", self.tag)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    /// The host's address on the bridge.
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    /// Cuts node `i` off from every other node, inside its namespace: its
    /// packets to and from them are dropped. The host (validators, admin)
    /// stays reachable.
    pub fn isolate(&self, i: usize) {
        let ns = self.ns(i);
        for j in (1..=self.nodes).filter(|&j| j != i) {
            let peer = self.node_ip(j);
            sh(
                "ip",
                &[
                    "netns", "exec", &ns, "iptables", "-A", "INPUT", "-s", &peer, "-j", "DROP",
                ],
            );
            sh(
                "ip",
                &[
                    "netns", "exec", &ns, "iptables", "-A", "OUTPUT", "-d", &peer, "-j", "DROP",
                ],
            );
        }
    }

    /// Undoes [`Net::isolate`].
    pub fn heal(&self, i: usize) {
        let ns = self.ns(i);
        sh("ip", &["netns", "exec", &ns, "iptables", "-F", "INPUT"]);
        sh("ip", &["netns", "exec", &ns, "iptables", "-F", "OUTPUT"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            sh_quiet("ip", &["netns", "del", &self.ns(i)]);
        }
        sh_quiet("ip", &["link", "del", &format!("{}h", self.tag)]);
        sh_quiet("ip", &["netns", "del", &self.lan()]);
    }
}

/// A small tmpfs mounted over a directory, with a filler file to make it
/// full. Unmounted on drop.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `16m`) at `path` (created).
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let p = path.to_str().expect("utf-8 path");
        sh(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", p],
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Writes the filler until the file system has no room left.
    pub fn fill(&self) {
        use std::io::Write;
        let mut file = std::fs::File::create(self.filler()).expect("filler");
        let chunk = vec![0xa5u8; 4096];
        loop {
            if let Err(e) = file.write_all(&chunk) {
                assert_eq!(
                    e.raw_os_error(),
                    Some(28),
                    "expected ENOSPC filling the tmpfs, got {e}"
                );
                break;
            }
        }
        let _ = file.sync_all();
    }

    /// Removes the filler: the disk has room again.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(p) = self.path.to_str() {
            sh_quiet("umount", &["-l", p]);
        }
    }
}
