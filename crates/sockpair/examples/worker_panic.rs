//! A worker whose function panics, forked by the fork server and exec'd: its message
//! comes back as `Error::Panicked`, under `panic = "abort"` too, where the worker ends
//! at the panic (`scripts/test.sh` runs this example built that way).

use sockpair::worker::{Error, Options};

fn boom(n: u32) -> u32 {
    panic!("boom {n}")
}

fn main() {
    sockpair::worker::init();
    let strategy = if cfg!(panic = "abort") {
        "abort"
    } else {
        "unwind"
    };
    let mut ok = true;
    for exec in [false, true] {
        let mut options = Options::new();
        options.exec(exec);
        match options.spawn(boom, 7).map(|handle| handle.join()) {
            Ok(Err(Error::Panicked { message, .. })) if message == "boom 7" => {
                println!("panic = {strategy}, exec {exec}: panicked: {message}");
            }
            other => {
                println!("panic = {strategy}, exec {exec}: not the panic: {other:?}");
                ok = false;
            }
        }
    }
    std::process::exit(if ok { 0 } else { 1 });
}
