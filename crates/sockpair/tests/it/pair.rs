//! Creating pairs: flags, types, the kernel's errors, anonymity.

use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};

use sockpair::{Domain, Flags, Protocol, Socket, Type, pair, pair_with};

use crate::util::{TYPES, cloexec_nonblock, in_fresh_process, listed_address, open_fds};

#[test]
fn every_flag_combination_is_set_on_both_ends() {
    let combinations = [
        Flags::empty(),
        Flags::CLOEXEC,
        Flags::NONBLOCK,
        Flags::CLOEXEC | Flags::NONBLOCK,
    ];
    for ty in TYPES {
        for flags in combinations {
            let (a, b) = pair_with(Domain::UNIX, ty, flags, None).unwrap();
            for end in [&a, &b] {
                assert_eq!(
                    cloexec_nonblock(end),
                    (
                        flags.contains(Flags::CLOEXEC),
                        flags.contains(Flags::NONBLOCK)
                    ),
                    "{ty:?} {flags:?}"
                );
                assert_eq!(end.ty().unwrap(), ty);
            }
        }
    }
}

#[test]
fn pair_is_close_on_exec_and_blocking() {
    for ty in TYPES {
        let (a, b) = pair(ty).unwrap();
        assert_eq!(cloexec_nonblock(&a), (true, false));
        assert_eq!(cloexec_nonblock(&b), (true, false));
    }
}

#[test]
fn explicit_protocol_zero_is_accepted() {
    let (a, _b) = pair_with(
        Domain::UNIX,
        Type::STREAM,
        Flags::CLOEXEC,
        Some(Protocol::from(0)),
    )
    .unwrap();
    assert_eq!(a.ty().unwrap(), Type::STREAM);
}

/// Each bad argument, with the errno this kernel gives for it.
fn bad_arguments() -> Vec<(Domain, Type, Flags, Option<Protocol>, i32)> {
    let unix = Domain::UNIX;
    let stream = Type::STREAM;
    let cloexec = Flags::CLOEXEC;
    vec![
        (
            Domain::from(libc::AF_UNSPEC),
            stream,
            cloexec,
            None,
            libc::EAFNOSUPPORT,
        ),
        (
            Domain::from(libc::AF_INET),
            stream,
            cloexec,
            None,
            libc::EOPNOTSUPP,
        ),
        (
            Domain::from(libc::AF_INET6),
            stream,
            cloexec,
            None,
            libc::EOPNOTSUPP,
        ),
        // Out of a u16's range: must not be truncated to AF_UNIX (65537 = 0x1_0001).
        (
            Domain::from(65537),
            stream,
            cloexec,
            None,
            libc::EAFNOSUPPORT,
        ),
        (Domain::from(-1), stream, cloexec, None, libc::EAFNOSUPPORT),
        (unix, Type::from(11), cloexec, None, libc::EINVAL),
        (unix, Type::from(-1), cloexec, None, libc::EINVAL),
        (
            unix,
            Type::from(libc::SOCK_RDM),
            cloexec,
            None,
            libc::ESOCKTNOSUPPORT,
        ),
        (
            unix,
            stream,
            cloexec,
            Some(Protocol::from(2)),
            libc::EPROTONOSUPPORT,
        ),
        (
            unix,
            stream,
            cloexec,
            Some(Protocol::from(-1)),
            libc::EPROTONOSUPPORT,
        ),
        (unix, stream, Flags::from(0x10), None, libc::EINVAL),
        (
            unix,
            Type::DGRAM,
            cloexec | Flags::from(1 << 30),
            None,
            libc::EINVAL,
        ),
    ]
}

#[test]
fn bad_arguments_get_the_kernels_errno_and_leak_nothing() {
    in_fresh_process("pair::bad_arguments_inner");
}

#[test]
#[ignore = "run alone in a fresh process by bad_arguments_get_the_kernels_errno_and_leak_nothing"]
fn bad_arguments_inner() {
    let before = open_fds();
    for (domain, ty, flags, protocol, errno) in bad_arguments() {
        let err = pair_with(domain, ty, flags, protocol).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(errno),
            "{domain:?} {ty:?} {flags:?} {protocol:?}: {err}"
        );
        assert_eq!(
            open_fds(),
            before,
            "{domain:?} {ty:?} {flags:?} {protocol:?}"
        );
    }
    // And the count does move when a pair is made, so the check above can fail.
    let _pair = pair(Type::STREAM).unwrap();
    assert_eq!(open_fds(), before + 2);
}

#[test]
fn the_pair_is_unnamed() {
    let (a, b) = pair(Type::STREAM).unwrap();
    let (a, b) = (UnixStream::from(a), UnixStream::from(b));
    for end in [&a, &b] {
        assert!(end.local_addr().unwrap().is_unnamed());
        assert!(end.peer_addr().unwrap().is_unnamed());
    }
    let (c, _d) = pair(Type::DGRAM).unwrap();
    assert!(UnixDatagram::from(c).local_addr().unwrap().is_unnamed());

    // The raw address is the family alone: nothing after sa_family_t.
    let (e, _f) = pair(Type::SEQPACKET).unwrap();
    let addr = rustix::net::getsockname(&e).unwrap();
    assert_eq!(addr.address_family(), rustix::net::AddressFamily::UNIX);
    assert_eq!(addr.addr_len() as usize, size_of::<libc::sa_family_t>());
}

#[test]
fn the_pair_has_no_path_in_proc_net_unix() {
    for ty in TYPES {
        let (a, b) = pair(ty).unwrap();
        assert_eq!(listed_address(&a), None, "{ty:?}");
        assert_eq!(listed_address(&b), None, "{ty:?}");
    }
}

#[test]
fn debug_names_the_fd_and_type() {
    let (a, _b) = pair(Type::SEQPACKET).unwrap();
    assert_eq!(
        format!("{a:?}"),
        format!("Socket {{ fd: {}, type: Type::SEQPACKET }}", a.as_raw_fd())
    );
    assert_eq!(format!("{:?}", Type::from(42)), "Type(42)");
    assert_eq!(
        format!("{:?}", Flags::CLOEXEC | Flags::from(0x10)),
        "Flags(CLOEXEC | 0x10)"
    );
    assert_eq!(format!("{:?}", Domain::UNIX), "Domain::UNIX");
}

#[test]
fn raw_values_round_trip() {
    assert_eq!(i32::from(Type::from(5)), 5);
    assert_eq!(Type::from(libc::SOCK_STREAM), Type::STREAM);
    assert_eq!(i32::from(Domain::UNIX), libc::AF_UNIX);
    assert_eq!(
        Flags::from(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC),
        Flags::CLOEXEC | Flags::NONBLOCK
    );
    let mut flags = Flags::empty();
    flags |= Flags::NONBLOCK;
    assert!(flags.contains(Flags::NONBLOCK) && !flags.contains(Flags::CLOEXEC));
}

#[test]
fn socket_converts_to_and_from_std_and_owned_fd() {
    let (a, b) = pair(Type::STREAM).unwrap();
    let fd = a.as_raw_fd();
    let owned: std::os::fd::OwnedFd = a.into();
    assert_eq!(owned.as_raw_fd(), fd);
    let a = Socket::from(owned);
    let mut std_a = UnixStream::from(a);
    let mut back = Socket::from(UnixStream::from(b));
    use std::io::{Read, Write};
    std_a.write_all(b"std").unwrap();
    let mut buf = [0; 3];
    back.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"std");
}
