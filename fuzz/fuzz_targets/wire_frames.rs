//! The MongoDB port before login: the input is written as a raw byte stream to a fresh
//! connection (framing, OP_MSG / OP_QUERY / OP_COMPRESSED decoding, checksums, and then
//! whatever an unauthenticated client may run), the write half is closed, and every reply
//! is read until the server closes. Afterwards a second connection must still get an
//! answer to `ping`: no input may take the server down or wedge it.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;

fn ping_frame() -> Vec<u8> {
    let body = bson::doc! {"ping": 1, "$db": "admin"};
    let mut section = vec![0u8];
    section.extend(body.to_vec().expect("bson"));
    let len = 16 + 4 + section.len();
    let mut frame = Vec::with_capacity(len);
    frame.extend((len as i32).to_le_bytes());
    frame.extend(7i32.to_le_bytes());
    frame.extend(0i32.to_le_bytes());
    frame.extend(2013i32.to_le_bytes());
    frame.extend(0u32.to_le_bytes());
    frame.extend(section);
    frame
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("the server accepts connections");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

fuzz_target!(|data: &[u8]| {
    let addr = strongroom_fuzz::wire_server();
    let mut stream = connect(addr);
    // The server may close first (a frame it refuses): writes then fail, which is fine.
    let _ = stream.write_all(data);
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }

    // The server is still up and answering.
    let mut probe = connect(addr);
    probe.write_all(&ping_frame()).expect("ping written");
    let mut len = [0u8; 4];
    probe
        .read_exact(&mut len)
        .expect("the server answers ping after the input");
    let len = i32::from_le_bytes(len);
    assert!((16..16 << 20).contains(&len), "reply length {len}");
});
