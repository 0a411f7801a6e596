use sockpair::Type;
use sockpair_benches::*;
use std::os::fd::AsRawFd;

fn poll_in(fd: i32) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, -1) };
}
fn recv_polled(fd: i32, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: valid buffer.
        let n = unsafe {
            libc::recv(
                fd,
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            got += n as usize;
        } else {
            poll_in(fd);
        }
    }
}

fn recv_poll_first(fd: i32, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        poll_in(fd);
        // SAFETY: valid buffer.
        let n = unsafe {
            libc::recv(
                fd,
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            got += n as usize;
        }
    }
}

fn main() {
    if run_child_mode() || std::env::args().any(|arg| arg == "--list") {
        return;
    }
    if std::env::var_os("NOPIN").is_none() {
        pin_to_one_cpu();
    }
    let (mut e1, s) = child_with("echo", Type::STREAM);
    let (mut e2, q) = child_with("echo", Type::SEQPACKET);
    let (fs, fq) = (s.as_raw_fd(), q.as_raw_fd());
    let frame: Vec<u8> = [&64u32.to_be_bytes()[..], &[7; 64]].concat();
    let mut back = vec![0u8; 68];
    let mut back2 = vec![0u8; 68];
    let mut back3 = vec![0u8; 68];
    let mut back4 = vec![0u8; 68];
    let times = interleaved(
        31,
        2000,
        &mut [
            &mut || {
                libc_send_all(fs, &frame);
                libc_recv_exact(fs, &mut back);
            },
            &mut || {
                libc_send_all(fs, &frame);
                recv_polled(fs, &mut back2);
            },
            &mut || {
                libc_send_all(fs, &frame);
                recv_poll_first(fs, &mut back3);
            },
            &mut || {
                libc_send_all(fq, &frame);
                recv_polled(fq, &mut back4);
            },
        ],
    );
    for (n, t) in [
        "stream blocking",
        "stream polled",
        "stream poll first",
        "seqp polled",
    ]
    .iter()
    .zip(&times)
    {
        println!(
            "{n:<20} {t:>10.3?} {:.3}",
            t.as_secs_f64() / times[0].as_secs_f64()
        );
    }
    drop((s, q));
    e1.wait().unwrap();
    e2.wait().unwrap();
}
