use std::time::Instant;
#[tokio::main]
async fn main() {
    let url = std::env::args().nth(1).unwrap();
    let t = Instant::now();
    let mut s = idserver::store::RdbStream::open(&url).await.unwrap();
    println!("open {:?}", t.elapsed());
    let mut n = 0;
    while let Some(p) = s.next_piece(4 << 20).await.unwrap() {
        n += p.len();
    }
    println!("{} bytes in {:?}", n, t.elapsed());
}
