//! The wire's readers fed arbitrary bytes and mutated real frames: a request header as the
//! hub reads it, an answer header and its typed results as the client reads them, and a
//! body of objects as the hub reads a `put`. No panic, and a frame or object claiming more
//! than the limits is refused. The short form of `fuzz/`'s `wire_frames` target (issue 15).

use dits_core::envelope::{seal, CompressionHint};
use dits_core::ChunkId;
use dits_wire::wire::*;
use proptest::prelude::*;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn frame(value: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::new();
    block_on(write_frame(&mut out, value)).unwrap();
    out
}

/// Real frames: a push's `update-refs` request, a `refs` answer, and a `put` body.
fn seeds() -> [Vec<u8>; 3] {
    let id = ChunkId::of(b"chunk");
    let request = Request {
        token: "dits_0123456789".into(),
        repo: "studio/film".into(),
        op: Op::UpdateRefs {
            updates: vec![RefUpdate {
                name: "refs/heads/main".into(),
                old: ZERO_OID.into(),
                new: "3b18e512dba79e4c8300dd08aeb37f8e728b8dad".into(),
            }],
            packs: vec![id.to_hex()],
            recipes: vec![id.to_hex()],
            atomic: true,
        },
    };
    let answer = Response::ok_with(&RefsResult {
        refs: [("refs/heads/main".to_string(), ZERO_OID.to_string())].into(),
    })
    .unwrap();
    let mut body = Vec::new();
    for plain in [&b"chunk"[..], &b"moov trak mdia ".repeat(40)] {
        let sealed = seal(plain, CompressionHint::Try);
        block_on(write_object(
            &mut body,
            &ChunkId::of(plain),
            plain.len() as u32,
            &sealed,
        ))
        .unwrap();
    }
    [frame(&request), frame(&answer), body]
}

fn read_all(bytes: &[u8], which: usize) -> Result<(), TestCaseError> {
    block_on(async {
        let mut r = bytes;
        match which {
            0 => {
                if let Ok(req) = read_frame::<_, Request>(&mut r).await {
                    let mut written = Vec::new();
                    write_frame(&mut written, &req).await.unwrap();
                    let again: Request = read_frame(&mut &written[..]).await.unwrap();
                    prop_assert_eq!(
                        serde_json::to_value(&again).unwrap(),
                        serde_json::to_value(&req).unwrap()
                    );
                }
            }
            1 => {
                if let Ok(answer) = read_frame::<_, Response>(&mut r).await {
                    let _ = answer.clone().result_as::<RefsResult>();
                    let _ = answer.clone().result_as::<LockListResult>();
                    let _ = answer.result_as::<UpdateRefsResult>();
                }
            }
            _ => {
                while let Ok(Some(object)) = read_object(&mut r).await {
                    prop_assert!(object.plain_len <= MAX_OBJECT);
                    prop_assert_eq!(object.open().is_ok(), object.verify().is_ok());
                }
            }
        }
        Ok(())
    })
}

#[test]
fn frames_claiming_more_than_the_limit_are_refused() {
    let mut huge = (MAX_FRAME + 1).to_be_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert!(block_on(read_frame::<_, Response>(&mut &huge[..])).is_err());
    let mut object = vec![0u8; 32];
    object.extend_from_slice(&(MAX_OBJECT + 1).to_be_bytes());
    object.extend_from_slice(&8u32.to_be_bytes());
    assert!(block_on(read_object(&mut &object[..])).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_wire_readers(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
        which in 0usize..3,
    ) {
        read_all(&bytes, which)?;
    }

    #[test]
    fn mutated_real_frames_never_panic_the_wire_readers(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let mut bytes = seeds()[which].clone();
        for (at, value, kind) in edits {
            let at = at % bytes.len().max(1);
            match kind {
                0 if !bytes.is_empty() => bytes[at] = value,
                1 => bytes.insert(at, value),
                _ => bytes.truncate(at),
            }
        }
        read_all(&bytes, which)?;
    }
}
