//! The QEMU command line and the files around one VM.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use slipway_exec::Command;

use crate::Accel;

/// The UEFI firmware code, read-only and shared.
pub(crate) const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The template of the firmware's variable store; each VM gets its own writable copy.
pub(crate) const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The CPU model under KVM: the host's, without the IA32_ARCH_CAPABILITIES MSR. Under nested KVM (a VM
/// host such as Firecracker) QEMU 7.2 aborts setting that MSR with plain `-cpu host` ("failed to set MSR
/// 0x10a"); without it the guest merely assumes it needs all speculation mitigations. The KVM probe uses
/// the same model, so a probe that passes means this boots.
pub(crate) const KVM_CPU: &str = "host,arch-capabilities=off";

/// Knobs of the emulated machine that change how fast it boots, never what it boots: the same image, disk,
/// firmware and devices the tests look at. The defaults are the fastest measured under TCG
/// (`cargo xtask bench boottest`, docs/benchmarks.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmTuning {
    /// The CPU model under TCG. `max` offers the guest every feature QEMU can emulate; a plainer model
    /// such as `qemu64` leaves the guest fewer code paths to pick. Ignored under KVM.
    pub tcg_cpu: String,
    /// The size of TCG's translated-code cache in MiB; `None` is QEMU's default. Ignored under KVM.
    pub tb_size_mib: Option<u32>,
    /// A virtio RNG device, so the guest's entropy comes from the host from the first moment.
    pub rng: bool,
    /// How long a guest may print nothing, on its serial console or to its results, before it settles:
    /// past this the boot is taken as stuck, and it is booted once more from a fresh overlay instead of
    /// being waited for until its deadline.
    pub silent_boot_limit: Duration,
}

impl Default for VmTuning {
    fn default() -> Self {
        Self {
            // Measured 0.84× the boot time of `max` (docs/benchmarks.md): with fewer CPU features the guest
            // kernel has fewer code paths to probe and emulate.
            tcg_cpu: "qemu64".into(),
            tb_size_mib: None,
            rng: true,
            // A TCG boot of the example image prints something every few seconds and settles in about a
            // minute; a guest kernel has been seen to stop for good after switching clock sources.
            silent_boot_limit: Duration::from_secs(300),
        }
    }
}

/// The files of one boot test inside its work directory.
#[derive(Debug, Clone)]
pub(crate) struct VmFiles {
    pub overlay: PathBuf,
    pub vars: PathBuf,
    pub seed: PathBuf,
    pub serial_log: PathBuf,
    pub results: PathBuf,
}

impl VmFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            overlay: dir.join("overlay.qcow2"),
            vars: dir.join("OVMF_VARS.fd"),
            seed: dir.join("seed.img"),
            serial_log: dir.join("serial.log"),
            results: dir.join("results.jsonl"),
        }
    }
}

/// `key=<path>` for a QEMU option, with commas doubled as QEMU's option syntax requires.
pub(crate) fn path_option(prefix: &str, path: &Path) -> OsString {
    let mut out = OsString::from(prefix);
    out.push(path.to_string_lossy().replace(',', ",,"));
    out
}

/// How the VM is networked: user networking, restricted to the host unless the tests need more, with the
/// guest's SSH port forwarded to a host port on the loopback interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    /// The guest may reach beyond the host.
    pub open: bool,
    /// The host port forwarded to the guest's port 22.
    pub ssh_port: u16,
}

impl Network {
    /// The `-netdev` value. `restrict=on` cuts the guest off from everything but the host's forwards.
    pub fn netdev(self) -> String {
        format!(
            "user,id=net0,restrict={},hostfwd=tcp:127.0.0.1:{}-:22",
            if self.open { "off" } else { "on" },
            self.ssh_port
        )
    }
}

/// A free TCP port on the loopback interface, for the SSH forward. The listener is closed again so QEMU
/// can bind it; another process taking it in that moment makes QEMU fail to start, which is an ERROR.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The VM that boots the image: q35 with UEFI, the overlay and the seed on virtio, user networking, the
/// console on the first serial port and the results channel on the second.
pub(crate) fn qemu_command(
    files: &VmFiles,
    accel: Accel,
    memory_mib: u32,
    cpus: u32,
    network: Network,
    tuning: &VmTuning,
) -> Command {
    let (accel_option, cpu) = match accel {
        Accel::Kvm => ("kvm".to_string(), KVM_CPU),
        // thread=multi: one host thread per guest CPU, so 2 vCPUs use both cores.
        Accel::Tcg => (
            match tuning.tb_size_mib {
                Some(mib) => format!("tcg,thread=multi,tb-size={mib}"),
                None => "tcg,thread=multi".to_string(),
            },
            tuning.tcg_cpu.as_str(),
        ),
    };
    let command = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", &accel_option, "-cpu", cpu])
        .args(["-m", &memory_mib.max(256).to_string()])
        .args(["-smp", &cpus.max(1).to_string()])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        // A guest that reboots (panic=N, a failed boot) stops the VM instead of looping until the deadline.
        .arg("-no-reboot")
        .arg("-drive")
        .arg(path_option(
            "if=pflash,format=raw,unit=0,readonly=on,file=",
            Path::new(OVMF_CODE),
        ))
        .arg("-drive")
        .arg(path_option(
            "if=pflash,format=raw,unit=1,file=",
            &files.vars,
        ))
        // The overlay is thrown away after the run, so there is nothing for the host to flush.
        .arg("-drive")
        .arg(path_option(
            "if=virtio,format=qcow2,cache=unsafe,discard=unmap,file=",
            &files.overlay,
        ))
        .arg("-drive")
        .arg(path_option(
            "if=virtio,format=raw,readonly=on,file=",
            &files.seed,
        ))
        .args(["-netdev", &network.netdev()])
        // No iPXE option ROM: the image boots from its disk, and loading iPXE costs seconds under TCG.
        .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
        .arg("-chardev")
        .arg(path_option("file,id=console,path=", &files.serial_log))
        .args(["-serial", "chardev:console"])
        .arg("-chardev")
        .arg(path_option("file,id=results,path=", &files.results))
        .args(["-serial", "chardev:results"])
        .discard_stdout();
    if tuning.rng {
        // Entropy from the host, so nothing in early boot waits for the guest's pool to fill.
        command.args(["-device", "virtio-rng-pci"])
    } else {
        command
    }
}

/// The last `lines` readable lines of the serial log, for notes: escape sequences and control characters
/// (firmware menus draw with them) removed, empty lines dropped.
pub(crate) async fn serial_tail(path: &Path, lines: usize) -> String {
    const TAIL_BYTES: u64 = 64 * 1024;
    let bytes = match read_tail(path, TAIL_BYTES).await {
        Ok(bytes) => bytes,
        Err(err) => return format!("(no serial log: {err})"),
    };
    let text = strip_terminal_codes(&String::from_utf8_lossy(&bytes));
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    if kept.is_empty() {
        return "(the serial console stayed silent)".to_string();
    }
    kept[kept.len().saturating_sub(lines)..].join(" | ")
}

pub(crate) async fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    file.seek(std::io::SeekFrom::Start(len.saturating_sub(max)))
        .await?;
    let mut out = Vec::new();
    file.take(max).read_to_end(&mut out).await?;
    Ok(out)
}

/// Removes ANSI/VT100 escape sequences and control characters other than newline; a carriage return
/// becomes a newline, since firmware redraws lines with it.
pub(crate) fn strip_terminal_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek() {
                // CSI: parameters and intermediates up to a final byte in @..~.
                Some('[') => {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // Character set designation: ESC ( B and friends.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                    chars.next();
                }
                // Two-character sequences such as ESC c or ESC 7.
                Some(_) => {
                    chars.next();
                }
                None => {}
            },
            '\r' | '\n' => out.push('\n'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_codes_are_removed() {
        assert_eq!(
            strip_terminal_codes("\u{1b}[2J\u{1b}[01;01HBdsDxe: failed\r\n\u{1b}(Bok\u{7}\u{0}"),
            "BdsDxe: failed\n\nok"
        );
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        assert_eq!(
            path_option("file=", Path::new("/a,b/c")),
            OsString::from("file=/a,,b/c")
        );
    }

    #[test]
    fn the_command_names_both_serial_ports_and_the_accelerator() {
        let files = VmFiles::in_dir(Path::new("/w"));
        let closed = Network {
            open: false,
            ssh_port: 2222,
        };
        let shown =
            qemu_command(&files, Accel::Tcg, 1024, 2, closed, &VmTuning::default()).display();
        assert!(
            shown.contains("-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22"),
            "{shown}"
        );
        assert!(
            shown.contains("-accel tcg,thread=multi -cpu qemu64"),
            "{shown}"
        );
        assert!(
            shown.contains("file,id=console,path=/w/serial.log"),
            "{shown}"
        );
        assert!(
            shown.contains("file,id=results,path=/w/results.jsonl"),
            "{shown}"
        );
        let open = Network {
            open: true,
            ssh_port: 2222,
        };
        let shown = qemu_command(&files, Accel::Kvm, 1024, 2, open, &VmTuning::default()).display();
        assert!(shown.contains("restrict=off"), "{shown}");
        assert!(
            shown.contains("-accel kvm -cpu host,arch-capabilities=off"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn the_serial_tail_keeps_the_last_readable_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serial.log");
        assert!(serial_tail(&path, 3).await.starts_with("(no serial log"));
        std::fs::write(&path, "one\r\n\u{1b}[0mtwo\n\nthree\nfour\n").expect("write");
        assert_eq!(serial_tail(&path, 3).await, "two | three | four");
    }
}
