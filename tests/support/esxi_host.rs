//! An emulated stateless ESXi host for the script bundle, as strict as a real one: a chroot
//! whose `/bin` holds a static BusyBox linked under exactly the applet names of ESXi's BusyBox
//! 1.22.1 (no `tr`, `base64`, `id`, `ps`), stub `esxcli`, `localcli`, `vmware` and `logger`,
//! its own UTS namespace for the host name, and a runner that treats a bundle as ESXi's does:
//! the downloaded bundle stays at `/etc/rc.local.d/autodeploy/<bundleName>` beside
//! `/etc/vmware/autodeploy/scriptBundle.json`, every member is extracted to
//! `.../autodeploy/scripts/` and run with no arguments and `PATH=/sbin:/bin`, its output read
//! to the end through pipes, its exit code kept, its output thrown away.
//!
//! What it cannot copy: the BusyBox binary is Debian's (1.35+), whose applets accept newer
//! option syntax than 1.22 (`timeout SECS` as well as `-t SECS`); the script avoids the
//! applets whose syntax changed, and the command guard in the bundle tests checks names only.

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a booting host may take for what a test waits for.
pub const WAIT: Duration = Duration::from_secs(60);

/// Every applet of ESXi's BusyBox 1.22.1, and nothing else (`../shared/reference/
/// esxi-autodeploy.md`). `logger` is replaced by a stub that writes the syslog file.
pub const APPLETS: &[&str] = &[
    "[",
    "[[",
    "addgroup",
    "adduser",
    "ash",
    "awk",
    "basename",
    "bunzip2",
    "bzcat",
    "bzip2",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "chvt",
    "cksum",
    "clear",
    "cp",
    "crond",
    "cut",
    "date",
    "dd",
    "delgroup",
    "deluser",
    "diff",
    "dirname",
    "dnsdomainname",
    "du",
    "echo",
    "egrep",
    "eject",
    "env",
    "expr",
    "false",
    "fdisk",
    "fgrep",
    "find",
    "fstrim",
    "getty",
    "grep",
    "groups",
    "gunzip",
    "gzip",
    "halt",
    "head",
    "hexdump",
    "hostname",
    "inetd",
    "init",
    "kill",
    "ln",
    "logger",
    "login",
    "ls",
    "lzop",
    "lzopcat",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mknod",
    "mktemp",
    "more",
    "mv",
    "nohup",
    "nslookup",
    "od",
    "passwd",
    "poweroff",
    "printf",
    "readlink",
    "reboot",
    "reset",
    "resize",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "setsid",
    "sh",
    "sha1sum",
    "sha256sum",
    "sha3sum",
    "sha512sum",
    "sleep",
    "sort",
    "stat",
    "stty",
    "sum",
    "sync",
    "tail",
    "tar",
    "taskset",
    "tee",
    "test",
    "time",
    "timeout",
    "touch",
    "true",
    "uname",
    "uniq",
    "unlzop",
    "unzip",
    "usleep",
    "vi",
    "watch",
    "wc",
    "wget",
    "which",
    "who",
    "xargs",
    "zcat",
];

/// The host tools that are not BusyBox applets, stubbed here.
pub const HOST_TOOLS: &[&str] = &["esxcli", "localcli", "vmware", "logger"];

/// `esxcli` and `localcli` share their namespaces; `esxcli` goes through hostd, which may not
/// answer yet at boot (until the time in `hostd_ready_at`), `localcli` never does.
const CLI: &str = r#"#!/bin/sh
state=/var/lib/fake
me=${0##*/}
echo "$me $*" >> $state/cli.calls
if [ "$me" = esxcli ] && [ -f $state/hostd_ready_at ] && [ "$(date +%s)" -lt "$(cat $state/hostd_ready_at)" ]; then
    echo "Connection failed" >&2
    exit 1
fi
case "$*" in
"network firewall ruleset list --ruleset-id=httpClient")
    echo "Name        Enabled"
    echo "----------  -------"
    echo "httpClient  $(cat $state/httpClient)"
    ;;
"network firewall ruleset set --ruleset-id=httpClient --enabled=true"|\
"network firewall ruleset set --ruleset-id=httpClient --enabled=false")
    echo "${6#--enabled=}" > $state/httpClient
    echo "${6#--enabled=}" >> $state/firewall.calls
    ;;
"network ip interface ipv4 get -i vmk0")
    echo "Name  IPv4 Address  IPv4 Netmask   IPv4 Broadcast  Address Type  Gateway   DHCP DNS"
    echo "----  ------------  -------------  --------------  ------------  --------  --------"
    echo "vmk0  10.0.0.7      255.255.255.0  10.0.0.255      STATIC        10.0.0.1     false"
    ;;
"network ip route ipv4 list")
    echo "Network   Netmask        Gateway   Interface  Source"
    echo "--------  -------------  --------  ---------  ------"
    echo "default   0.0.0.0        10.0.0.1  vmk0       MANUAL"
    echo "10.0.0.0  255.255.255.0  0.0.0.0   vmk0       MANUAL"
    ;;
"system stats uptime get")
    echo "754000000"
    ;;
*)
    echo "Error: Unknown command or namespace $*" >&2
    exit 1
    ;;
esac
"#;

const VMWARE: &str = "#!/bin/sh\n[ \"$1\" = -v ] && echo 'VMware ESXi 7.0.3 build-21930508'\n";
/// The emulated host's name.
pub const HOSTNAME: &str = "esx-07.lab.local";
const LOGGER: &str = r#"#!/bin/sh
tag=logger
if [ "$1" = -t ]; then tag=$2; shift 2; fi
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $tag: $*" >> /var/log/syslog.log
"#;

/// Where the runner extracts members, as on ESXi.
pub const SCRIPTS_DIR: &str = "etc/rc.local.d/autodeploy/scripts";
/// Where the downloaded bundle stays.
pub const AUTODEPLOY_DIR: &str = "etc/rc.local.d/autodeploy";
/// The bundle's name as Auto Deploy gives it.
pub const BUNDLE_NAME: &str = "esxi-tweet-bundle-3f2a9c.tgz";

/// One member's run.
#[derive(Debug)]
pub struct MemberRun {
    pub name: String,
    pub code: Option<i32>,
    pub elapsed: Duration,
}

/// The emulated host; its root is removed on drop.
pub struct EsxiHost {
    dir: tempfile::TempDir,
    /// Mount a `noexec` tmpfs on /tmp for each member run, as ESXi 8's execInstalledOnly
    /// refuses binaries that are not part of a VIB.
    pub exec_installed_only: bool,
}

fn busybox() -> PathBuf {
    for candidate in ["/bin/busybox", "/usr/bin/busybox"] {
        let path = Path::new(candidate);
        if path.exists() {
            return path.to_path_buf();
        }
    }
    panic!("busybox not found: apt-get install busybox-static (.ci/run does)");
}

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl EsxiHost {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in [
            "bin",
            "sbin",
            "dev",
            "tmp",
            "var/log",
            "var/lib/fake",
            "etc/vmware/autodeploy",
            SCRIPTS_DIR,
        ] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::fs::copy(busybox(), root.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::remove_file(root.join("bin/logger")).unwrap();
        write_exec(&root.join("bin/esxcli"), CLI);
        write_exec(&root.join("bin/localcli"), CLI);
        write_exec(&root.join("bin/vmware"), VMWARE);
        write_exec(&root.join("bin/logger"), LOGGER);
        std::fs::write(
            root.join("etc/vmware/autodeploy/scriptBundle.json"),
            format!(
                "{{\"deployHost\": \"vc.lab:6501\", \"bundleName\": \"{BUNDLE_NAME}\", \"blackList\": [], \"hostId\": \"4c4c4544-0042\"}}\n"
            ),
        )
        .unwrap();
        std::fs::write(root.join("var/lib/fake/httpClient"), "false\n").unwrap();
        for (name, minor) in [("null", "3"), ("zero", "5"), ("urandom", "9")] {
            let status = Command::new("mknod")
                .args(["-m", "666"])
                .arg(root.join("dev").join(name))
                .args(["c", "1", minor])
                .status()
                .unwrap();
            assert!(status.success(), "mknod needs root");
        }
        Self {
            dir,
            exec_installed_only: false,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// hostd answers `esxcli` only from `secs` seconds from now on (`localcli` always works).
    pub fn hostd_ready_in(&self, secs: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        std::fs::write(
            self.root().join("var/lib/fake/hostd_ready_at"),
            format!("{}\n", now + secs),
        )
        .unwrap();
    }

    /// Every `esxcli`/`localcli` call, as `"tool args..."`.
    pub fn cli_calls(&self) -> Vec<String> {
        self.calls("cli")
    }

    /// The lines a fake tool wrote to `var/lib/fake/<tool>.calls`.
    fn calls(&self, tool: &str) -> Vec<String> {
        let log = self.root().join(format!("var/lib/fake/{tool}.calls"));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    /// Stores `tgz` where Auto Deploy's download leaves it, then extracts every member and
    /// runs each in order, as ESXi's runner does.
    pub fn run_bundle(&self, tgz: &[u8]) -> Vec<MemberRun> {
        let downloaded = self.root().join(AUTODEPLOY_DIR).join(BUNDLE_NAME);
        std::fs::write(&downloaded, tgz).unwrap();
        let scripts = self.root().join(SCRIPTS_DIR);
        let mut names = Vec::new();
        let tgz = std::fs::read(&downloaded).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
        archive.set_preserve_permissions(true);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            entry.unpack_in(&scripts).unwrap();
            names.push(name);
        }
        names
            .into_iter()
            .map(|name| {
                let inside = format!("/{SCRIPTS_DIR}/{name}");
                // A UTS namespace gives the host its name: BusyBox runs its own `hostname`
                // applet in preference to anything on PATH, so a stub would not be used.
                let noexec_tmp = if self.exec_installed_only {
                    format!(
                        "mount -t tmpfs -o noexec tmpfs '{}/tmp' && ",
                        self.root().display()
                    )
                } else {
                    String::new()
                };
                let mut cmd = Command::new("unshare");
                cmd.args([
                    "--uts",
                    "--mount",
                    "--propagation",
                    "private",
                    "/bin/sh",
                    "-c",
                ])
                .arg(format!(
                    "{noexec_tmp}hostname {HOSTNAME} && exec chroot '{}' '{inside}'",
                    self.root().display()
                ));
                cmd.env_clear()
                    .env("PATH", "/sbin:/bin")
                    .current_dir("/")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let started = Instant::now();
                // Like communicate(): wait until both pipes close, then for the exit.
                let output = cmd.spawn().unwrap().wait_with_output().unwrap();
                MemberRun {
                    name,
                    code: output.status.code(),
                    elapsed: started.elapsed(),
                }
            })
            .collect()
    }

    pub fn syslog(&self) -> String {
        std::fs::read_to_string(self.root().join("var/log/syslog.log")).unwrap_or_default()
    }

    /// Asserts that the syslog gets `needle` within the test's wait; the log is the message.
    pub fn expect_log(&self, needle: &str) {
        assert!(
            self.wait_for_log(needle, WAIT),
            "no {needle:?} in the log: {}",
            self.syslog()
        );
    }

    /// Asserts that every process the bundle started has ended within the test's wait.
    pub fn expect_idle(&self) {
        assert!(
            self.wait_until_idle(WAIT),
            "left running: {:?}",
            self.processes()
        );
    }

    /// Waits (bounded) for a syslog line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.syslog().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Processes whose root is this host's root directory.
    pub fn processes(&self) -> Vec<u32> {
        let root = std::fs::canonicalize(self.root()).unwrap();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root))
            .collect()
    }

    /// Waits (bounded) until no process runs inside the host.
    pub fn wait_until_idle(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.processes().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Every firewall change, as `"args..."`.
    pub fn firewall_calls(&self) -> Vec<String> {
        self.calls("firewall")
    }

    /// Files under the root whose bytes contain `needle`.
    pub fn files_containing(&self, needle: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                let kind = entry.file_type().unwrap();
                if kind.is_dir() {
                    if !path.ends_with("dev") {
                        stack.push(path);
                    }
                } else if kind.is_file() {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push(path);
                    }
                }
            }
        }
        found
    }
}

/// Scans every process's command line until stopped; returns any that held a needle.
pub struct CmdlineWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl CmdlineWatch {
    pub fn start(needles: Vec<String>) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut hits = Vec::new();
            let mut scans = 0;
            while !flag.load(Ordering::Relaxed) {
                scans += 1;
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) else {
                        continue;
                    };
                    let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
                    if needles.iter().any(|n| line.contains(n.as_str())) {
                        hits.push(line);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (scans, hits)
        });
        Self { stop, handle }
    }

    /// Stops and returns (number of scans, offending command lines).
    pub fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}
