#!/usr/bin/env python3
"""Runs a command as an older kernel would answer it: python3 scripts/old-kernel.py CMD...

A seccomp filter, inherited by every process the command starts, makes the kernel
features that sockpair probes for fail the way a kernel without them fails:

  feature                      since   here it answers
  SO_PASSRIGHTS (get/set)      6.16    ENOPROTOOPT (an unknown socket option)
  memfd_create MFD_NOEXEC_SEAL 6.3     EINVAL (an unknown flag; MFD_EXEC too)
  close_range                  5.9     ENOSYS
  pidfd_open, pidfd_getfd,     5.3-5.6 ENOSYS
  pidfd_send_signal, clone3
  a read-only MAP_SHARED mmap  6.7     EPERM (before 6.7 the kernel refuses a shared
                                       mapping of a write-sealed memfd; here every
                                       read-only shared mapping is refused)

That is how Linux 5.2 answers. Everything else passes untouched. x86_64 only (the
system call numbers below are that architecture's).
"""

import ctypes
import errno
import os
import platform
import struct
import sys

if platform.machine() != "x86_64":
    sys.exit(f"old-kernel.py: x86_64 only, not {platform.machine()}")
if len(sys.argv) < 2:
    sys.exit(__doc__.strip().splitlines()[0])

AUDIT_ARCH_X86_64 = 0xC000003E
NR = {
    "mmap": 9,
    "setsockopt": 54,
    "getsockopt": 55,
    "memfd_create": 319,
    "pidfd_send_signal": 424,
    "pidfd_open": 434,
    "clone3": 435,
    "close_range": 436,
    "pidfd_getfd": 438,
}
SOL_SOCKET, SO_PASSRIGHTS = 1, 83
MFD_EXEC, MFD_NOEXEC_SEAL = 0x10, 0x08
PROT_READ, MAP_SHARED = 0x1, 0x01

# Classic BPF over struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }.
LD_W_ABS, JEQ_K, JSET_K, RET_K = 0x20, 0x15, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
OFF_NR, OFF_ARCH = 0, 4


def arg(i):
    """Offset of the low 32 bits of argument i (little-endian)."""
    return 16 + 8 * i


# The program, with jump targets as labels resolved below.
program = [
    ("ld", OFF_ARCH),
    ("jeq", AUDIT_ARCH_X86_64, None, "allow"),
    ("ld", OFF_NR),
    ("jeq", NR["setsockopt"], "sockopt", None),
    ("jeq", NR["getsockopt"], "sockopt", None),
    ("jeq", NR["memfd_create"], "memfd", None),
    ("jeq", NR["pidfd_open"], "enosys", None),
    ("jeq", NR["pidfd_getfd"], "enosys", None),
    ("jeq", NR["pidfd_send_signal"], "enosys", None),
    ("jeq", NR["clone3"], "enosys", None),
    ("jeq", NR["close_range"], "enosys", None),
    ("jeq", NR["mmap"], "mmap", None),
    ("ret", ALLOW),
    ("label", "mmap"),
    ("ld", arg(2)),
    ("jeq", PROT_READ, None, "allow"),
    ("ld", arg(3)),
    ("jset", MAP_SHARED, None, "allow"),
    ("ret", ERRNO | errno.EPERM),
    ("label", "sockopt"),
    ("ld", arg(1)),
    ("jeq", SOL_SOCKET, None, "allow"),
    ("ld", arg(2)),
    ("jeq", SO_PASSRIGHTS, None, "allow"),
    ("ret", ERRNO | errno.ENOPROTOOPT),
    ("label", "memfd"),
    ("ld", arg(1)),
    ("jset", MFD_EXEC | MFD_NOEXEC_SEAL, None, "allow"),
    ("ret", ERRNO | errno.EINVAL),
    ("label", "enosys"),
    ("ret", ERRNO | errno.ENOSYS),
    ("label", "allow"),  # last: classic BPF jumps forward only
    ("ret", ALLOW),
]


def assemble(program):
    labels, at = {}, 0
    for item in program:
        if item[0] == "label":
            labels[item[1]] = at
        else:
            at += 1
    out, at = [], 0
    for item in program:
        op = item[0]
        if op == "label":
            continue
        if op == "ld":
            out.append(struct.pack("HBBI", LD_W_ABS, 0, 0, item[1]))
        elif op == "ret":
            out.append(struct.pack("HBBI", RET_K, 0, 0, item[1]))
        else:
            code = JEQ_K if op == "jeq" else JSET_K
            _, k, yes, no = item
            jt = 0 if yes is None else labels[yes] - at - 1
            jf = 0 if no is None else labels[no] - at - 1
            assert 0 <= jt < 256 and 0 <= jf < 256
            out.append(struct.pack("HBBI", code, jt, jf, k))
        at += 1
    return b"".join(out)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


code = assemble(program)
buffer = ctypes.create_string_buffer(code, len(code))
fprog = SockFprog(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
    sys.exit(f"old-kernel.py: PR_SET_NO_NEW_PRIVS: {os.strerror(ctypes.get_errno())}")
if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
    sys.exit(f"old-kernel.py: seccomp filter: {os.strerror(ctypes.get_errno())}")
os.environ["SOCKPAIR_OLD_KERNEL"] = "5.2"
os.execvp(sys.argv[1], sys.argv[1:])
