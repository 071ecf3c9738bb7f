//! What the operating system says about a run of processes: where the built `cutover`
//! binary is, the peak memory of a process, the disk a folder takes and the disk still free,
//! and the machine the figures come from. Linux only (`/proc`), as every benchmark here.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail, ensure};

/// The `cutover` binary cargo built next to this benchmark: the benchmark runs from
/// `target/<profile>/deps/NAME-HASH`, the binary is `target/<profile>/cutover`. Fails,
/// saying which command builds it, when it is not there.
pub fn cutover_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("the benchmark's own path")?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .context("the benchmark runs from target/<profile>/deps")?;
    let binary = profile.join("cutover");
    if !binary.is_file() {
        let release = profile.file_name().is_some_and(|p| p == "release");
        bail!(
            "the cutover binary is not at {}: build it first with `{}` (a benchmark target \
             does not build the binaries of other packages)",
            binary.display(),
            if release {
                "cargo build --release --workspace"
            } else {
                "cargo test --workspace --no-run"
            }
        );
    }
    Ok(binary)
}

/// The peak resident memory of process `pid` so far (`VmHWM` in `/proc/PID/status`), bytes.
pub fn peak_memory(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status_kib(&status, "VmHWM:")
        .map(|kib| kib * 1024)
        .with_context(|| format!("no VmHWM line in {path}"))
}

/// The resident memory of process `pid` now (`VmRSS`), bytes.
pub fn resident_memory(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status_kib(&status, "VmRSS:")
        .map(|kib| kib * 1024)
        .with_context(|| format!("no VmRSS line in {path}"))
}

/// This process's peak resident memory so far, bytes.
pub fn own_peak_memory() -> anyhow::Result<u64> {
    peak_memory(std::process::id())
}

/// The value in KiB of the line `field` (`VmHWM:`, `MemTotal:`) of a `/proc` status file.
fn status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Disk blocks allocated to the files under `path`, bytes: what `du -s` says (RocksDB
/// preallocates its logs, so file lengths would say less).
pub fn disk_used(path: &Path) -> anyhow::Result<u64> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mut used = meta.blocks() * 512;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            // A file RocksDB removes between the listing and the look (an obsolete log or
            // table file) takes no disk any more.
            match disk_used(&entry?.path()) {
                Ok(bytes) => used += bytes,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(used)
}

fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Bytes free to an unprivileged user on the file system holding `path`, from `df -Pk`.
pub fn disk_free(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .context("running df")?;
    ensure!(
        out.status.success(),
        "df -Pk {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    df_available(&String::from_utf8_lossy(&out.stdout))
        .map(|kib| kib * 1024)
        .with_context(|| format!("no figures in what df said about {}", path.display()))
}

/// The `Available` column (KiB) of `df -P`'s second line.
fn df_available(text: &str) -> Option<u64> {
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// The machine in one line: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map_or("unknown CPU", |(_, name)| name.trim())
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = status_kib(&meminfo, "MemTotal:").unwrap_or(0) as f64 / (1 << 20) as f64;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {memory:.1} GiB RAM, Linux {}",
        kernel.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_peak_memory_of_this_process() {
        let peak = own_peak_memory().expect("VmHWM");
        assert!(peak > 1 << 20, "{peak}");
        assert_eq!(
            status_kib("Name:\tx\nVmHWM:\t  1234 kB\n", "VmHWM:"),
            Some(1234)
        );
    }

    #[test]
    fn disk_used_counts_every_file_under_a_folder() {
        let dir = tempfile::tempdir().expect("a folder");
        std::fs::create_dir(dir.path().join("sub")).expect("sub");
        std::fs::write(dir.path().join("sub/f"), vec![1u8; 100_000]).expect("a file");
        let used = disk_used(dir.path()).expect("du");
        assert!(used >= 100_000, "{used}");
    }

    #[test]
    fn reads_the_available_column_of_df() {
        let text = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                    /dev/vda 263174212 42991884 53438900 45% /\n";
        assert_eq!(df_available(text), Some(53_438_900));
        assert!(disk_free(Path::new("/")).expect("df") > 0);
    }
}
