//! The KVM probe: boot a one-sector program under KVM and see whether it ran.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_exec::{Command, CommandRunner, ExecError};

/// How long the probe VM may take. A working KVM runs the boot sector in well under a second; the rest
/// is QEMU and SeaBIOS start-up. A KVM that hangs (nested virtualization gone wrong) is cut off here.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The exit status QEMU reports when the guest writes 1 to the `isa-debug-exit` port: `(1 << 1) | 1`.
const GUEST_RAN_STATUS: i32 = 3;

/// How the VM's CPU is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulator: slow, but works everywhere.
    Tcg,
}

impl Accel {
    /// The name QEMU's `-accel` option takes, which is also how it is shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A BIOS boot sector that initializes the x87 FPU, writes 1 to I/O port 0xf4 (QEMU's `isa-debug-exit`,
/// which then exits with status 3) and otherwise halts forever: `finit; mov al,1; out 0xf4,al; hlt; jmp $`.
///
/// The `finit` is there because integer code alone proves too little: under nested KVM (seen on a
/// Firecracker host) plain integer code runs, but the first x87 or SSE instruction stops the VM with "KVM
/// internal error. Suberror: 1" (emulation failure). OVMF's first phase and every kernel execute such
/// instructions, so a probe without it says KVM while every real boot hangs until its deadline.
pub(crate) fn probe_boot_sector() -> [u8; 512] {
    let mut sector = [0u8; 512];
    let code = [
        0x9B, 0xDB, 0xE3, // finit (fwait; fninit)
        0xB0, 0x01, // mov al, 1
        0xE6, 0xF4, // out 0xf4, al
        0xF4, // hlt
        0xEB, 0xFE, // jmp $ (an interrupt wakes hlt; never run off the end)
    ];
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Finds out whether KVM really works here, by booting a tiny guest under it with a short timeout.
///
/// `/dev/kvm` existing is not enough: on some hosts (nested virtualization, broken modules) it opens
/// fine and then the first guest instruction never completes. Anything other than proof that the guest
/// ran (QEMU exiting with status 3) gives [`Accel::Tcg`]. The probe image is written into `work_dir`.
pub async fn probe_kvm(runner: &dyn CommandRunner, work_dir: &Path) -> Accel {
    if !Path::new("/dev/kvm").exists() {
        tracing::info!("no /dev/kvm; using TCG");
        return Accel::Tcg;
    }
    let image = work_dir.join("kvm-probe.img");
    let written = match tokio::fs::create_dir_all(work_dir).await {
        Ok(()) => tokio::fs::write(&image, probe_boot_sector()).await,
        Err(err) => Err(err),
    };
    if let Err(err) = written {
        tracing::warn!(path = %image.display(), %err, "cannot write the KVM probe image; using TCG");
        return Accel::Tcg;
    }
    let mut drive = std::ffi::OsString::from("format=raw,if=ide,file=");
    drive.push(image.as_os_str());
    let command = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-machine", "pc", "-m", "16", "-nodefaults"])
        // The boot test's CPU model: a KVM that runs this sector but aborts on the real VM's CPU
        // configuration would otherwise pass the probe and fail every boot.
        .args(["-cpu", crate::vm::KVM_CPU])
        .args(["-no-user-config", "-display", "none", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(drive)
        .timeout(PROBE_TIMEOUT)
        .discard_stdout();
    let result = runner.run(command).await;
    let _ = tokio::fs::remove_file(&image).await;
    match result {
        Err(ExecError::Failed { status, .. }) if status.code() == Some(GUEST_RAN_STATUS) => {
            tracing::debug!("KVM probe guest ran");
            Accel::Kvm
        }
        Ok(_) => {
            tracing::warn!("KVM probe VM exited without running the guest; using TCG");
            Accel::Tcg
        }
        Err(err) => {
            tracing::warn!(%err, "KVM does not work here; using TCG");
            Accel::Tcg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_sector_exits_through_the_debug_port() {
        let sector = probe_boot_sector();
        assert_eq!(
            &sector[..10],
            &[0x9B, 0xDB, 0xE3, 0xB0, 0x01, 0xE6, 0xF4, 0xF4, 0xEB, 0xFE]
        );
        assert!(sector[10..510].iter().all(|b| *b == 0));
        assert_eq!(&sector[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn accel_shows_as_qemu_names_it() {
        assert_eq!(Accel::Kvm.to_string(), "kvm");
        assert_eq!(Accel::Tcg.to_string(), "tcg");
        assert_eq!(
            serde_json::to_string(&Accel::Tcg).ok().as_deref(),
            Some("\"tcg\"")
        );
    }
}
