//! The Alertmanager webhook parser on any body: an answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = looptel_retro::webhook::Notification::from_json(data);
});
