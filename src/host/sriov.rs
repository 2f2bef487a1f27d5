//! SR-IOV: the PCI device named by a port's `binding:profile.pci_slot`, found in sysfs. A
//! virtual function (VF) is programmed through its physical function (PF): the port's MAC
//! and the network's VLAN are set on "vf N of PF", the VF's own netdev is what Docker moves
//! into the container. A whole device passed through (`direct-physical`) has no PF and is
//! moved as it is.

use std::path::{Path, PathBuf};

use super::HostError;

/// Where sysfs is mounted (`/sys`; elsewhere in tests or when the host's /sys is mounted
/// into kuryr's container at another path).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs {
            root: PathBuf::from("/sys"),
        }
    }
}

/// The device behind a PCI address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciNetDevice {
    pub pci_slot: String,
    /// PF netdev and this VF's number on it; None for a device that is no VF.
    pub vf_of: Option<(String, u32)>,
    /// The device's own netdev in this namespace; None once Docker moved it into a
    /// container (or when no network driver is bound, e.g. vfio-pci).
    pub netdev: Option<String>,
}

/// `domain:bus:device.function`, e.g. `0000:81:10.2`. Checked before it becomes a path: it
/// comes from Neutron, which stores whatever the port's creator wrote.
pub fn validate_pci_slot(slot: &str) -> Result<(), HostError> {
    let bad = || {
        HostError::Invalid(format!(
            "pci_slot {slot:?} is not a PCI address like 0000:81:10.2"
        ))
    };
    let hex = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    let mut parts = slot.split(':');
    let (Some(domain), Some(bus), Some(devfn), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let Some((dev, func)) = devfn.split_once('.') else {
        return Err(bad());
    };
    let func_ok = func.len() == 1 && matches!(func.as_bytes()[0], b'0'..=b'7');
    if hex(domain, 4, 8) && hex(bus, 2, 2) && hex(dev, 2, 2) && func_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The single entry of a device's `net/` directory.
fn netdev_of(dev: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dev.join("net"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().next()
}

impl Sysfs {
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The VFs of PF netdev `pf` (its `device/virtfnN` links), by number.
    pub fn vfs_of(&self, pf: &str) -> Result<Vec<(u32, String)>, HostError> {
        crate::protocol::validate::ifname("PF", pf).map_err(|e| HostError::Invalid(e.0))?;
        let dev = self.root.join("class/net").join(pf).join("device");
        let entries = std::fs::read_dir(&dev)
            .map_err(|e| HostError::NotFound(format!("PF {pf} ({}: {e})", dev.display())))?;
        let mut vfs: Vec<(u32, String)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n: u32 = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("virtfn")?
                    .parse()
                    .ok()?;
                let slot = std::fs::read_link(e.path()).ok()?;
                Some((n, slot.file_name()?.to_str()?.to_string()))
            })
            .collect();
        vfs.sort();
        Ok(vfs)
    }

    /// Finds the device of `pci_slot`, its PF and VF number (`physfn/virtfnN` pointing
    /// back at it) and its netdev.
    pub fn device(&self, pci_slot: &str) -> Result<PciNetDevice, HostError> {
        validate_pci_slot(pci_slot)?;
        let dev = self.root.join("bus/pci/devices").join(pci_slot);
        if !dev.exists() {
            return Err(HostError::NotFound(format!(
                "PCI device {pci_slot} (no {})",
                dev.display()
            )));
        }
        let physfn = dev.join("physfn");
        let vf_of = if physfn.exists() {
            let pf = netdev_of(&physfn).ok_or_else(|| {
                HostError::NotFound(format!(
                    "network interface of the physical function of {pci_slot}"
                ))
            })?;
            let index = std::fs::read_dir(&physfn)
                .map_err(|e| HostError::NotFound(format!("{}: {e}", physfn.display())))?
                .filter_map(|e| e.ok())
                .find_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n: u32 = name.strip_prefix("virtfn")?.parse().ok()?;
                    let target = std::fs::read_link(e.path()).ok()?;
                    (target.file_name()? == pci_slot).then_some(n)
                })
                .ok_or_else(|| {
                    HostError::NotFound(format!(
                        "virtfn link of {pci_slot} under its physical function {pf}"
                    ))
                })?;
            Some((pf, index))
        } else {
            None
        };
        Ok(PciNetDevice {
            pci_slot: pci_slot.to_string(),
            vf_of,
            netdev: netdev_of(&dev),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn pci_slots_are_checked_before_they_become_paths() {
        for ok in [
            "0000:81:10.2",
            "0000:00:1f.7",
            "10000:3a:00.0",
            "ABCD:ef:01.0",
        ] {
            assert!(validate_pci_slot(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "../../etc",
            "0000:81:10",
            "0000:81:10.8",
            "0000:81:10.2/..",
            "000:81:10.2",
            "0000:81:10.2:1",
            "0000:8g:10.2",
        ] {
            assert!(validate_pci_slot(bad).is_err(), "{bad}");
        }
    }

    /// A sysfs with PF 0000:81:00.0 (netdev ens1f0) and VFs 0..3 at 0000:81:10.<n>; VF 2
    /// has netdev ens1f0v2, VF 3 has none (moved into a container).
    fn fake_sysfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let devs = t.path().join("bus/pci/devices");
        let pf = devs.join("0000:81:00.0");
        std::fs::create_dir_all(pf.join("net/ens1f0")).unwrap();
        for n in 0..4 {
            let vf = devs.join(format!("0000:81:10.{n}"));
            std::fs::create_dir_all(vf.join("net")).unwrap();
            symlink("../0000:81:00.0", vf.join("physfn")).unwrap();
            symlink(format!("../0000:81:10.{n}"), pf.join(format!("virtfn{n}"))).unwrap();
        }
        std::fs::create_dir_all(devs.join("0000:81:10.2/net/ens1f0v2")).unwrap();
        // As the kernel has them: class/net/<if> is the netdev's directory, whose
        // `device` is the PCI function.
        std::fs::create_dir_all(t.path().join("class/net")).unwrap();
        symlink("../..", pf.join("net/ens1f0/device")).unwrap();
        symlink(
            "../../bus/pci/devices/0000:81:00.0/net/ens1f0",
            t.path().join("class/net/ens1f0"),
        )
        .unwrap();
        t
    }

    #[test]
    fn vfs_of_a_pf_are_listed_by_number() {
        let t = fake_sysfs();
        let s = Sysfs::at(t.path());
        let vfs = s.vfs_of("ens1f0").unwrap();
        let want: Vec<(u32, String)> = (0..4).map(|n| (n, format!("0000:81:10.{n}"))).collect();
        assert_eq!(vfs, want);
        assert!(s
            .vfs_of("ens9")
            .unwrap_err()
            .to_string()
            .contains("PF ens9"));
        assert!(s.vfs_of("../x").is_err());
    }

    #[test]
    fn a_vf_is_found_with_its_pf_number_and_netdev() {
        let t = fake_sysfs();
        let s = Sysfs::at(t.path());
        let d = s.device("0000:81:10.2").unwrap();
        assert_eq!(d.vf_of, Some(("ens1f0".to_string(), 2)));
        assert_eq!(d.netdev.as_deref(), Some("ens1f0v2"));
        let d = s.device("0000:81:10.3").unwrap();
        assert_eq!(d.vf_of, Some(("ens1f0".to_string(), 3)));
        assert_eq!(d.netdev, None);
        // The PF itself (direct-physical): no VF number, its own netdev.
        let d = s.device("0000:81:00.0").unwrap();
        assert_eq!(d.vf_of, None);
        assert_eq!(d.netdev.as_deref(), Some("ens1f0"));
    }

    #[test]
    fn missing_devices_and_links_are_named() {
        let t = fake_sysfs();
        let s = Sysfs::at(t.path());
        let e = s.device("0000:82:10.0").unwrap_err().to_string();
        assert!(e.contains("PCI device 0000:82:10.0"), "{e}");
        std::fs::remove_file(t.path().join("bus/pci/devices/0000:81:00.0/virtfn1")).unwrap();
        let e = s.device("0000:81:10.1").unwrap_err().to_string();
        assert!(e.contains("virtfn link of 0000:81:10.1"), "{e}");
        assert!(s.device("../../..").is_err());
    }
}
