//! The one ethtool setting kuryr needs: a device's tx checksum offload, through the
//! SIOCETHTOOL ioctl (what `ethtool -K DEV tx off` does), in this network namespace.

use super::HostError;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `struct ifreq` as SIOCETHTOOL reads it: the name, then a pointer to the command.
#[repr(C)]
struct IfreqData {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    // The kernel copies the whole ifreq (40 bytes on 64-bit).
    _pad: [u8; 16],
}

/// Turns a device's tx checksum offload on or off.
pub fn set_tx_checksum(ifname: &str, on: bool) -> Result<(), HostError> {
    let err = |message: String, errno: Option<i32>| HostError::Netlink {
        op: "ethtool tx checksum".into(),
        name: ifname.into(),
        message,
        errno,
    };
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(err("not a valid interface name".into(), None));
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    let mut req = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut value as *mut EthtoolValue).cast(),
        _pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: a plain datagram socket, closed below; the ioctl reads `req` and the
    // EthtoolValue it points to, both alive for the call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(err(format!("socket: {e}"), e.raw_os_error()));
        }
        let rc = libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfreqData);
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 {
            return Err(err(e.to_string(), e.raw_os_error()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_an_ifreq() {
        assert_eq!(std::mem::size_of::<IfreqData>(), 40);
    }

    #[test]
    fn a_missing_device_is_an_error_naming_it() {
        let e = set_tx_checksum("kuryr-nodev0", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("kuryr-nodev0"), "{e}");
        assert!(set_tx_checksum("", false).is_err());
        assert!(set_tx_checksum(&"x".repeat(16), false).is_err());
    }
}
