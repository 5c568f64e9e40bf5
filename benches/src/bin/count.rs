//! `count <scenario> <n>`: sends `n` requests (or, for `kafka-*`, processes
//! `n` consumed records) through a scenario's stack, for callgrind
//! (`scripts/bench.sh` runs it twice per scenario and divides the
//! difference, so start-up cancels out).

use looptel_benches::messaging;

fn main() {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| "bare".to_owned());
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let bytes = if scenario.starts_with("kafka-") {
        let consumer = {
            let _runtime = rt.enter();
            messaging::consumer(&scenario)
        };
        tracing::dispatcher::with_default(&consumer.dispatch, || {
            rt.block_on(async {
                let mut total = 0;
                for _ in 0..n {
                    // A consumer owns each record it receives.
                    let record = messaging::record(&scenario);
                    total += messaging::process(&consumer, &record).await;
                }
                total
            })
        })
    } else {
        let stack = {
            let _runtime = rt.enter();
            looptel_benches::stack(&scenario)
        };
        tracing::dispatcher::with_default(&stack.dispatch, || {
            rt.block_on(async {
                let mut total = 0;
                for _ in 0..n {
                    total += looptel_benches::one(&stack.router, &scenario).await;
                }
                total
            })
        })
    };
    println!("{scenario} {n} {bytes}");
}
