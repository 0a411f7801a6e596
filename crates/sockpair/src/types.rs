//! The arguments of `socketpair(2)` as `Copy` newtypes: named constants for the values
//! that make sense, and `From<i32>` so that any raw value can still reach the kernel.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// Defines a newtype over the raw `i32` of one `socketpair(2)` argument, with named
/// constants whose names its `Debug` output uses.
macro_rules! raw_newtype {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$cmeta:meta])* $konst:ident = $value:expr, )* }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(i32);

        impl $name {
            $( $(#[$cmeta])* pub const $konst: $name = $name($value); )*

            /// The raw value passed to the kernel.
            pub const fn raw(self) -> i32 {
                self.0
            }
        }

        impl From<i32> for $name {
            /// Any raw value; the kernel decides whether it is valid.
            fn from(raw: i32) -> Self {
                $name(raw)
            }
        }

        impl From<$name> for i32 {
            fn from(value: $name) -> i32 {
                value.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match *self {
                    $( $name::$konst => f.write_str(concat!(stringify!($name), "::", stringify!($konst))), )*
                    $name(raw) => write!(f, concat!(stringify!($name), "({})"), raw),
                }
            }
        }

        /// In words for people: the constant's name in lower case (`stream`), or the
        /// raw value of one without a name.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match *self {
                    $( $name::$konst => f.write_str(&stringify!($konst).to_ascii_lowercase()), )*
                    $name(raw) => write!(f, "{} {raw}", stringify!($name).to_ascii_lowercase()),
                }
            }
        }
    };
}

raw_newtype! {
    /// The communication domain (`AF_*`) of a pair. Only [`Domain::UNIX`] makes pairs.
    ///
    /// ```
    /// use sockpair::Domain;
    /// assert_eq!(format!("{:?}", Domain::UNIX), "Domain::UNIX");
    /// assert_eq!(format!("{:?}", Domain::from(99)), "Domain(99)");
    /// assert_eq!(Domain::UNIX.to_string(), "unix");
    /// assert_eq!(Domain::from(99).to_string(), "domain 99");
    /// ```
    Domain {
        /// `AF_UNIX` (also called `AF_LOCAL`): the only domain `socketpair(2)` supports
        /// on Linux.
        UNIX = libc::AF_UNIX,
    }
}

raw_newtype! {
    /// The socket type (`SOCK_*`) of a pair.
    ///
    /// | type | boundaries | order, reliability | end of stream |
    /// |---|---|---|---|
    /// | [`Type::STREAM`] | none: a byte stream | yes | EOF when the peer closes |
    /// | [`Type::SEQPACKET`] | each send is one record | yes | EOF when the peer closes |
    /// | [`Type::DGRAM`] | each send is one datagram | yes on `AF_UNIX` | none: see below |
    ///
    /// A datagram pair never sees its peer close: no EOF, no `POLLHUP`; only the next
    /// send fails, with `ECONNREFUSED`. A zero-length seqpacket record reads as 0 bytes,
    /// exactly like EOF.
    ///
    /// ```
    /// use sockpair::Type;
    /// assert_eq!(format!("{:?}", Type::SEQPACKET), "Type::SEQPACKET");
    /// ```
    Type {
        /// `SOCK_STREAM`: a bidirectional byte stream, a "stream pipe".
        STREAM = libc::SOCK_STREAM,
        /// `SOCK_DGRAM`: datagrams with boundaries; on `AF_UNIX` reliable and ordered.
        DGRAM = libc::SOCK_DGRAM,
        /// `SOCK_SEQPACKET`: records with boundaries over a connection, with EOF.
        SEQPACKET = libc::SOCK_SEQPACKET,
    }
}

raw_newtype! {
    /// The protocol argument of `socketpair(2)`. `AF_UNIX` knows only protocol 0, which
    /// is what `None` means in [`pair_with`](crate::pair_with); any other value comes
    /// back as `EPROTONOSUPPORT`.
    ///
    /// ```
    /// use sockpair::Protocol;
    /// assert_eq!(format!("{:?}", Protocol::from(2)), "Protocol(2)");
    /// ```
    Protocol {}
}

/// Flags OR-ed into the type by `socketpair(2)` itself, so that they are set atomically
/// on both new descriptors: no other thread can `fork` and `exec` in between and inherit
/// a descriptor that was meant to be close-on-exec.
///
/// ```
/// use sockpair::Flags;
/// let flags = Flags::CLOEXEC | Flags::NONBLOCK;
/// assert!(flags.contains(Flags::NONBLOCK));
/// assert_eq!(format!("{flags:?}"), "Flags(CLOEXEC | NONBLOCK)");
/// assert_eq!(format!("{:?}", Flags::empty()), "Flags(empty)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(i32);

impl Flags {
    /// `SOCK_CLOEXEC`: both descriptors are close-on-exec (`FD_CLOEXEC`).
    pub const CLOEXEC: Flags = Flags(libc::SOCK_CLOEXEC);
    /// `SOCK_NONBLOCK`: both open file descriptions are non-blocking (`O_NONBLOCK`).
    pub const NONBLOCK: Flags = Flags(libc::SOCK_NONBLOCK);

    const NAMED: [(Flags, &'static str); 2] =
        [(Flags::CLOEXEC, "CLOEXEC"), (Flags::NONBLOCK, "NONBLOCK")];

    /// No flags: blocking descriptors that are inherited across `exec`.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits passed to the kernel.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl From<i32> for Flags {
    /// Any raw bits; unknown ones come back from the kernel as `EINVAL`.
    fn from(raw: i32) -> Self {
        Flags(raw)
    }
}

impl From<Flags> for i32 {
    fn from(flags: Flags) -> i32 {
        flags.0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flags(")?;
        let mut rest = self.0;
        let mut sep = "";
        for (flag, name) in Flags::NAMED {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                rest &= !flag.0;
                sep = " | ";
            }
        }
        match (rest, sep) {
            (0, "") => f.write_str("empty")?,
            (0, _) => {}
            (rest, sep) => write!(f, "{sep}{rest:#x}")?,
        }
        f.write_str(")")
    }
}
