#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| firmware_agent_fuzz::pushed_timetable(data));
