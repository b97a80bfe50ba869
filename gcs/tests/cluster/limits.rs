//! Size limits on a 3-member cluster: a write over the limits is refused in
//! band by the leader (sent raw, past the client's own check) and changes
//! nothing; values at the limit replicate to every member and read back,
//! even when together they exceed one RPC message (the read is paged).

use std::time::Duration;

use troupe_core::rpc::CallOptions;
use troupe_gcs::api::{Kv, KvReply, KvRequest};
use troupe_gcs::{
    Command, CommandError, Operation, RangeRequest, MAX_VALUE_BYTES, MAX_WRITE_BYTES,
};

use crate::support::{wait_until, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_writes_are_refused_in_band_and_values_at_the_limit_read_back_everywhere() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let client = cluster.client();

    // Raw, past the client's check: the leader refuses it before the log.
    let ch = cluster.rpc.channel(&cluster.nodes[leader].addr);
    let over = Command::new(Operation::put("big", vec![1; MAX_VALUE_BYTES]));
    let reply = ch
        .call_with::<Kv>(
            &KvRequest::Write(over),
            CallOptions::timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap()
        .unwrap();
    let KvReply::Written(response) = reply else {
        panic!("unexpected {reply:?}")
    };
    let Err(CommandError::TooLarge { bytes, limit, .. }) = &response.outcome else {
        panic!("not refused: {:?}", response.outcome)
    };
    assert_eq!(
        (*bytes, *limit),
        (MAX_VALUE_BYTES as u64 + 3, MAX_VALUE_BYTES as u64)
    );
    assert!(client.get("big").await.unwrap().is_none(), "nothing stored");
    // The client refuses the same write itself, with the same error.
    let refused = client.put("big", vec![1; MAX_VALUE_BYTES]).await.unwrap();
    assert!(matches!(
        refused.outcome,
        Err(CommandError::TooLarge { .. })
    ));
    let txn = client
        .write(Operation::Txn(troupe_gcs::TxnRequest {
            compares: vec![],
            success: (0..3)
                .map(|i| {
                    troupe_gcs::TxnOp::Put(troupe_gcs::PutRequest::new(
                        format!("t{i}"),
                        vec![1; MAX_WRITE_BYTES / 3],
                    ))
                })
                .collect(),
            failure: vec![],
        }))
        .await
        .unwrap();
    assert!(matches!(txn.outcome, Err(CommandError::TooLarge { .. })));

    // Twelve values just under the limit: more than one message in all.
    const N: usize = 12;
    let value = |i: usize| vec![i as u8; MAX_VALUE_BYTES - 16];
    for i in 0..N {
        let written = client.put(format!("v/{i:02}"), value(i)).await.unwrap();
        assert!(written.outcome.is_ok(), "{:?}", written.outcome);
    }
    let read = client
        .range(RangeRequest::prefix("v/", None), true)
        .await
        .unwrap();
    assert_eq!(read.kvs.len(), N);
    assert!(!read.more);
    assert!(read
        .kvs
        .iter()
        .enumerate()
        .all(|(i, kv)| kv.value == value(i)));
    // Every member applied them (replicated, not only accepted).
    for (i, node) in cluster.nodes.iter().enumerate() {
        let reader = node.member.as_ref().expect("running").reader();
        wait_until(
            &format!("member {i} has every value"),
            Duration::from_secs(30),
            || {
                let reader = reader.clone();
                async move {
                    let mut request = RangeRequest::prefix("v/", None);
                    let mut got = 0;
                    loop {
                        let page = reader.range(&request).unwrap();
                        got += page.kvs.len();
                        let Some(last) = page.kvs.last().filter(|_| page.more) else {
                            break;
                        };
                        request = request.after(&last.key, page.kvs.len() as u64).unwrap();
                    }
                    got == N
                }
            },
        )
        .await;
    }
}
