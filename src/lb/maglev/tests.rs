use super::*;

const M: u32 = 65537;

fn backends(n: u8, weight: impl Fn(u8) -> u32) -> Vec<MaglevBackend> {
    (0..n)
        .map(|i| MaglevBackend {
            addr: Ipv4Addr::new(10, 20, 0, 11 + i),
            weight: weight(i),
        })
        .collect()
}

#[test]
fn equal_weights_share_equally_within_one_percent() {
    let b = backends(7, |_| 1);
    let t = MaglevTable::build(&b, M);
    for s in t.shares(b.len()) {
        let share = s as f64 / f64::from(M);
        assert!((share - 1.0 / 7.0).abs() < 0.01, "share {share}");
    }
}

#[test]
fn weights_are_honoured_within_one_percent() {
    let b = backends(4, |i| [1, 2, 3, 10][usize::from(i)]);
    let total: u32 = b.iter().map(|x| x.weight).sum();
    let t = MaglevTable::build(&b, M);
    for (i, s) in t.shares(b.len()).into_iter().enumerate() {
        let share = s as f64 / f64::from(M);
        let want = f64::from(b[i].weight) / f64::from(total);
        assert!(
            (share - want).abs() < 0.01,
            "backend {i}: {share} vs {want}"
        );
    }
}

#[test]
fn zero_weight_backends_get_nothing() {
    let b = backends(3, |i| if i == 1 { 0 } else { 1 });
    let t = MaglevTable::build(&b, M);
    assert_eq!(t.shares(3)[1], 0);
    let none = MaglevTable::build(&backends(2, |_| 0), M);
    assert_eq!(none.lookup(12345), None);
}

#[test]
fn order_of_backends_does_not_matter() {
    let b = backends(5, |i| u32::from(i) + 1);
    let mut r = b.clone();
    r.reverse();
    let t1 = MaglevTable::build(&b, M);
    let t2 = MaglevTable::build(&r, M);
    // Indices differ (they point into differently ordered lists): compare addresses.
    for slot in 0..M as u64 {
        let a = b[usize::from(t1.lookup(slot).unwrap())].addr;
        let c = r[usize::from(t2.lookup(slot).unwrap())].addr;
        assert_eq!(a, c, "slot {slot}");
    }
}

#[test]
fn removing_one_of_n_moves_about_one_nth() {
    let n = 10u8;
    let b = backends(n, |_| 1);
    let t1 = MaglevTable::build(&b, M);
    let removed = 4usize;
    let fewer: Vec<_> = b
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != removed)
        .map(|(_, x)| *x)
        .collect();
    let t2 = MaglevTable::build(&fewer, M);
    let mut moved = 0u64;
    for slot in 0..M as u64 {
        let before = b[usize::from(t1.lookup(slot).unwrap())].addr;
        let after = fewer[usize::from(t2.lookup(slot).unwrap())].addr;
        if before != after {
            moved += 1;
        }
    }
    let frac = moved as f64 / f64::from(M);
    let ideal = 1.0 / f64::from(n);
    // The removed backend's slots must move; Maglev moves only a little more than that.
    assert!(frac >= ideal - 0.005, "moved {frac}");
    assert!(frac <= ideal * 1.5, "moved {frac}, ideal {ideal}");
}

#[test]
fn same_backends_same_table() {
    let b = backends(3, |_| 1);
    assert_eq!(MaglevTable::build(&b, M), MaglevTable::build(&b, M));
}
