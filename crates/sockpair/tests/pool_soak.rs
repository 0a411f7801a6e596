//! A pool's workers under a long run of healthy tasks, in a test binary of its own, so
//! that it has the machine to itself (cargo runs test binaries one after the other).
//!
//! Issue 23: a worker armed `SIGIO` right after reading a request, and the kernel's late
//! notification of that same request killed it ("killed by signal 29"): about 2 errors
//! in 200,000 tasks before the fix.

use sockpair::worker::Pool;

sockpair::worker::init_before_main!();

fn twice(x: u64) -> u64 {
    2 * x
}

#[test]
fn pool_map_over_500000_healthy_tasks_has_no_error() {
    let pool = Pool::new(4).unwrap();
    let mut errors = Vec::new();
    let mut count = 0u64;
    for (x, result) in pool.map(twice, 0..500_000u64).enumerate() {
        match result {
            Ok(y) => assert_eq!(y, 2 * x as u64),
            Err(err) => errors.push(format!("task {x}: {err}")),
        }
        count += 1;
    }
    assert_eq!(count, 500_000);
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
}
