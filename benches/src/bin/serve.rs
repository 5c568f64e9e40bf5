//! `serve <scenario>`: serves a scenario's stack over loopback on one
//! thread (a current-thread runtime, as the load test pins it to one core)
//! until killed; prints the address it listens on.

use std::io::Write as _;

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "bare".to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let stack = {
        let _runtime = rt.enter();
        looptel_benches::stack(&scenario)
    };
    tracing::dispatcher::with_default(&stack.dispatch, || {
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind: {e}"));
            let addr = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("address: {e}"));
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{addr}");
            let _ = out.flush();
            axum::serve(listener, stack.router.clone())
                .await
                .unwrap_or_else(|e| panic!("serve: {e}"));
        });
    });
}
