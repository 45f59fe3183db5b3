//! View replay: every message of three- and four-party runs is recorded, then, for each
//! party, the test rebuilds what that party holds (its input, its key, its send order and
//! every message it received) and computes every equality it can test: its own IDs
//! hashed to the group (with and without its key), every received point multiplied by
//! its key and by the key's inverse, the tags of all of these, the received tags, and the
//! positions of received streams that carry its own set or its result. Values that
//! collide tie the items into components.
//!
//! The checks, per party and per output mode:
//!
//! * the initiator's own IDs are tied to nothing but its result, and the result is the
//!   intersection: the initiator cannot, for example, count how many of its IDs the
//!   combiner holds (the protocol before the 2-party-style reroute let it);
//! * no other party except the combiner ties any of its IDs to anything; a set returned
//!   to its owner (the combiner's) arrives in an order unrelated to the owner's;
//! * a simulator that knows only the party's own input, key and send order, the public set
//!   sizes and the party's stated leakage (the initiator: the intersection or its size;
//!   the combiner: how many IDs each group of parties shares; others: nothing) builds a
//!   view with the same streams whose components have exactly the same shapes;
//! * two worlds whose other sets differ but give the initiator the same sizes and the
//!   same intersection produce the same initiator view shapes.
//!
//! What this cannot show is that no cleverer test than an equality exists; that rests on
//! the decisional Diffie-Hellman assumption in ristretto255.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use confide_mpc::transport::{Recording, RecordingTransport, memory_mesh};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::crypto::{JobKey, hash_to_point, tag_of};
use crate::privacy_tests::round_one_points;
use crate::wire::{STREAM_RESULT, STREAM_SET};
use crate::{OutputMode, PsiJob, Tuning};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const POINTS: u8 = 2;
const TAGS: u8 = 3;
const END_ONLY: u8 = 4;
const INDICES: u8 = 5;

/// One stream a party received.
#[derive(Debug, Clone)]
struct Stream {
    from: String,
    kind: u8,
    stream: u8,
    origin: usize,
    items: Vec<Vec<u8>>,
    total: Option<u64>,
}

impl Stream {
    fn label(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.from, self.kind, self.stream, self.origin
        )
    }
}

/// What one party holds after a run.
#[derive(Debug, Clone)]
struct View {
    me: usize,
    n: usize,
    key: Scalar,
    /// Its own IDs in the order it sent them.
    order: Vec<String>,
    sizes: Vec<u64>,
    streams: Vec<Stream>,
}

fn view_of(log: &Recording, me: usize, n: usize, key: Scalar, ids: &[String]) -> View {
    let name = NAMES[me];
    let by_point: HashMap<[u8; 32], &String> = ids
        .iter()
        .map(|id| {
            (
                (hash_to_point(id.as_bytes()) * key).compress().to_bytes(),
                id,
            )
        })
        .collect();
    let order: Vec<String> = round_one_points(log, name)
        .iter()
        .map(|p| by_point[p].clone())
        .collect();
    assert_eq!(order.len(), ids.len());
    let mut sizes = vec![ids.len() as u64; n];
    let mut streams: BTreeMap<(String, u8, usize), Stream> = BTreeMap::new();
    for m in log.lock().unwrap().iter().filter(|m| m.to == name) {
        let b = &m.bytes;
        let from = NAMES.iter().position(|x| *x == m.from).unwrap();
        if b[0] == 1 {
            sizes[from] = u64::from_le_bytes(b[36..44].try_into().unwrap());
            continue;
        }
        let (stream, origin) = (b[1], u16::from_le_bytes([b[2], b[3]]) as usize);
        let s = streams
            .entry((m.from.clone(), stream, origin))
            .or_insert_with(|| Stream {
                from: m.from.clone(),
                kind: END_ONLY,
                stream,
                origin,
                items: Vec::new(),
                total: None,
            });
        let width = match b[0] {
            POINTS => 32,
            TAGS => 12,
            INDICES => 8,
            4 => {
                s.total = Some(u64::from_le_bytes(b[8..16].try_into().unwrap()));
                continue;
            }
            k => panic!("unknown message kind {k}"),
        };
        s.kind = b[0];
        s.items.extend(b[8..].chunks(width).map(<[u8]>::to_vec));
    }
    View {
        me,
        n,
        key,
        order,
        sizes,
        streams: streams.into_values().collect(),
    }
}

/// An item of a view: its label and set, and every value the party can compute from it.
type Item = ((String, usize), Vec<Vec<u8>>);

/// Union-find over the items of a view.
struct Components {
    parent: Vec<usize>,
    /// Per item: its label ("own" for the party's own IDs) and the set it comes from.
    label: Vec<(String, usize)>,
}

impl Components {
    fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.parent[r] != r {
            r = self.parent[r];
        }
        self.parent[i] = r;
        r
    }

    /// Every item's component (items of singletons included).
    fn of(view: &View) -> Self {
        let (k, k_inv) = (view.key, view.key.invert());
        // Each point and its tag, compressed once.
        let forms = |q: RistrettoPoint| {
            let c = q.compress();
            let tag = tag_of(c.as_bytes());
            [
                [&[b'P'][..], c.as_bytes()].concat(),
                [&[b'T'][..], &tag].concat(),
            ]
        };
        let at = |j: u64| [&[b'A'][..], &j.to_le_bytes()].concat();
        let mut items: Vec<Item> = view
            .order
            .par_iter()
            .enumerate()
            .map(|(j, id)| {
                let h = hash_to_point(id.as_bytes());
                let mut values: Vec<Vec<u8>> = [h, h * k].into_iter().flat_map(forms).collect();
                values.push(at(j as u64));
                (("own".to_string(), view.me), values)
            })
            .collect();
        for s in &view.streams {
            // A stream carrying this party's own set can be laid against its send order.
            let aligned = s.origin == view.me && s.items.len() == view.order.len();
            let more: Vec<_> = s
                .items
                .par_iter()
                .enumerate()
                .map(|(j, bytes)| {
                    let mut values: Vec<Vec<u8>> = match s.kind {
                        POINTS => {
                            let q = CompressedRistretto::from_slice(bytes)
                                .unwrap()
                                .decompress()
                                .unwrap();
                            [q, q * k, q * k_inv].into_iter().flat_map(forms).collect()
                        }
                        TAGS => vec![[&[b'T'][..], bytes].concat()],
                        INDICES => vec![at(u64::from_le_bytes(bytes[..].try_into().unwrap()))],
                        _ => unreachable!(),
                    };
                    if aligned {
                        values.push(at(j as u64));
                    }
                    ((s.label(), s.origin), values)
                })
                .collect();
            items.extend(more);
        }
        let mut c = Components {
            parent: (0..items.len()).collect(),
            label: Vec::with_capacity(items.len()),
        };
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        for (item, (label, values)) in items.into_iter().enumerate() {
            c.label.push(label);
            for value in values {
                match seen.get(&value) {
                    Some(&other) => {
                        let (a, b) = (c.find(item), c.find(other));
                        c.parent[a] = b;
                    }
                    None => {
                        seen.insert(value, item);
                    }
                }
            }
        }
        c
    }

    /// The items of every component with more than one item.
    fn groups(&mut self) -> Vec<Vec<usize>> {
        let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.parent.len() {
            let r = self.find(i);
            by_root.entry(r).or_default().push(i);
        }
        by_root.into_values().filter(|g| g.len() > 1).collect()
    }

    /// Shapes of the components: sorted item labels, with how often each shape occurs.
    fn shapes(&mut self) -> BTreeMap<Vec<String>, usize> {
        let mut out = BTreeMap::new();
        for g in self.groups() {
            let mut shape: Vec<String> = g.iter().map(|&i| self.label[i].0.clone()).collect();
            shape.sort();
            *out.entry(shape).or_default() += 1;
        }
        out
    }

    /// How many own IDs are tied to an item of another party's set, and to a result item.
    fn own_links(&mut self, me: usize) -> (usize, usize) {
        let (mut other, mut result) = (0, 0);
        for g in self.groups() {
            let own = g.iter().filter(|&&i| self.label[i].0 == "own").count();
            if g.iter().any(|&i| self.label[i].1 != me) {
                other += own;
            }
            let res = format!("/{INDICES}/{STREAM_RESULT}/");
            if g.iter().any(|&i| self.label[i].0.contains(&res)) {
                result += own;
            }
        }
        (other, result)
    }
}

/// A party's stated leakage (see "What each party learns" in the crate docs).
enum Allowed {
    Nothing,
    Intersection(BTreeSet<String>),
    Size(u64),
    /// For each group of parties, how many IDs are held by exactly that group.
    Venn(BTreeMap<BTreeSet<usize>, usize>),
}

fn random_point() -> RistrettoPoint {
    RISTRETTO_BASEPOINT_POINT * Scalar::random(&mut rand::rng())
}

/// A view with the real view's streams (their senders, kinds and origins are public
/// facts of the protocol; their lengths are checked against the sizes and the leakage)
/// and contents built from `allowed`, the party's own input, key and order only.
fn simulate(real: &View, allowed: &Allowed) -> View {
    let mut universe: Vec<Vec<RistrettoPoint>> = vec![Vec::new(); real.n];
    match allowed {
        Allowed::Venn(groups) => {
            for (group, &count) in groups {
                for _ in 0..count {
                    let q = random_point();
                    for &o in group {
                        universe[o].push(q);
                    }
                }
            }
        }
        _ => {
            for (o, set) in universe.iter_mut().enumerate() {
                *set = (0..real.sizes[o]).map(|_| random_point()).collect();
            }
        }
    }
    let k_inv = real.key.invert();
    let mut sim = real.clone();
    for s in &mut sim.streams {
        let mut set = universe[s.origin].clone();
        set.shuffle(&mut rand::rng());
        let size = real.sizes[s.origin] as usize;
        let items: Vec<Vec<u8>> = match (s.kind, s.stream) {
            (POINTS, r) if r as usize == real.n - 1 => set
                .par_iter()
                .map(|q| (q * k_inv).compress().to_bytes().to_vec())
                .collect(),
            (POINTS, _) => (0..size)
                .into_par_iter()
                .map(|_| random_point().compress().to_bytes().to_vec())
                .collect(),
            (TAGS, STREAM_SET) => set
                .iter()
                .map(|q| tag_of(q.compress().as_bytes()).to_vec())
                .collect(),
            (INDICES, STREAM_RESULT) | (END_ONLY, STREAM_RESULT) => {
                let (ids, size) = match allowed {
                    Allowed::Intersection(ids) => (Some(ids), ids.len()),
                    Allowed::Size(size) => (None, *size as usize),
                    _ => panic!("a result stream at a party that learns no result"),
                };
                assert_eq!(s.total, Some(size as u64), "the result's size");
                let positions = real.order.iter().enumerate();
                ids.map(|ids| {
                    positions
                        .filter(|(_, id)| ids.contains(*id))
                        .map(|(j, _)| (j as u64).to_le_bytes().to_vec())
                        .collect()
                })
                .unwrap_or_default()
            }
            _ => panic!("the simulator cannot produce stream {}", s.label()),
        };
        assert_eq!(items.len(), s.items.len(), "length of stream {}", s.label());
        if s.kind != INDICES && s.kind != END_ONLY {
            assert_eq!(items.len(), size, "stream {} has its set's size", s.label());
        }
        s.items = items;
    }
    sim
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("id-{i:06}")).collect()
}

fn union(parts: &[std::ops::Range<u32>]) -> Vec<String> {
    parts.iter().flat_map(|r| ids(r.clone())).collect()
}

/// Runs a job over a recording mesh; returns the log.
async fn run(
    dir: &Path,
    sets: &[Vec<String>],
    i0: usize,
    mode: OutputMode,
    keys: &[Scalar],
) -> Recording {
    let n = sets.len();
    let log = Recording::default();
    let mut tasks = Vec::new();
    for (i, t) in memory_mesh(&NAMES[..n], 2).into_iter().enumerate() {
        let input = dir.join(format!("{}.csv", NAMES[i]));
        let rows: String = sets[i].iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(&input, format!("id\n{rows}")).unwrap();
        let job = PsiJob {
            initiator: NAMES[i0].into(),
            parties: NAMES[..n].iter().map(|s| s.to_string()).collect(),
            mode,
            protocol: crate::Protocol::Ecdh,
            input,
            id_column: "id".into(),
            output: None,
            work_dir: dir.join("work"),
        };
        let (t, key) = (RecordingTransport::new(t, log.clone()), keys[i]);
        let tuning = Tuning {
            bucket_bytes: 2048,
            chunk_points: 90,
            chunk_tags: 70,
            ..Tuning::default()
        };
        tasks.push(tokio::spawn(async move {
            crate::run_with_key(&t, &job, JobKey::from_scalar(key), tuning).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    log
}

/// Runs one world and checks every party's view; returns the initiator's view shapes.
async fn check_world(
    sets: &[Vec<String>],
    i0: usize,
    mode: OutputMode,
) -> BTreeMap<Vec<String>, usize> {
    let n = sets.len();
    let combiner = (i0 + 2) % n;
    let keys: Vec<Scalar> = (0..n).map(|_| Scalar::random(&mut rand::rng())).collect();
    let dir = tempfile::tempdir().unwrap();
    let log = run(dir.path(), sets, i0, mode, &keys).await;
    let as_set = |s: &Vec<String>| s.iter().cloned().collect::<BTreeSet<String>>();
    let mut all = as_set(&sets[0]);
    for s in &sets[1..] {
        all = all.intersection(&as_set(s)).cloned().collect();
    }
    let mut venn: BTreeMap<BTreeSet<usize>, usize> = BTreeMap::new();
    let everyone: BTreeSet<&String> = sets.iter().flatten().collect();
    for id in everyone {
        let group = (0..n).filter(|&o| sets[o].contains(id)).collect();
        *venn.entry(group).or_default() += 1;
    }
    let full_key: Scalar = keys.iter().product();
    let mut initiator_shapes = BTreeMap::new();
    for me in 0..n {
        let view = view_of(&log, me, n, keys[me], &sets[me]);
        let mut comps = Components::of(&view);
        let (linked, to_result) = comps.own_links(me);
        if me == i0 {
            // How many IDs it shares with each other party: none of it may show.
            let shared: Vec<usize> = (0..n)
                .filter(|&o| o != me)
                .map(|o| sets[me].iter().filter(|x| sets[o].contains(x)).count())
                .collect();
            assert_eq!(
                linked,
                0,
                "{mode:?}: the initiator ties {linked} of its IDs to other parties' sets \
                 (it shares {shared:?} with the others); it may learn only the \
                 intersection ({})",
                all.len()
            );
            let expect = if mode == OutputMode::Initiator {
                all.len()
            } else {
                0
            };
            assert_eq!(
                to_result, expect,
                "{mode:?}: the result names the intersection"
            );
        } else if me != combiner {
            assert_eq!(
                linked, 0,
                "{mode:?}: party {me} ties its IDs to others' sets"
            );
        }
        // A set that comes back to its owner comes back in an unrelated order.
        for s in view
            .streams
            .iter()
            .filter(|s| s.origin == me && s.kind == TAGS)
        {
            let truth: HashMap<Vec<u8>, usize> = view
                .order
                .iter()
                .enumerate()
                .map(|(j, id)| {
                    let f = hash_to_point(id.as_bytes()) * full_key;
                    (tag_of(f.compress().as_bytes()).to_vec(), j)
                })
                .collect();
            let order: Vec<usize> = s.items.iter().map(|t| truth[t]).collect();
            let ascents = order.windows(2).filter(|w| w[0] < w[1]).count() as f64;
            let frac = ascents / (order.len() - 1) as f64;
            assert!(
                (0.35..0.65).contains(&frac),
                "{mode:?}: party {me} gets its own set back in its order ({frac})"
            );
        }
        let allowed = if me == i0 && mode == OutputMode::Initiator {
            Allowed::Intersection(all.clone())
        } else if me == i0 {
            Allowed::Size(all.len() as u64)
        } else if me == combiner {
            Allowed::Venn(venn.clone())
        } else {
            Allowed::Nothing
        };
        let shapes = comps.shapes();
        let simulated = Components::of(&simulate(&view, &allowed)).shapes();
        assert_eq!(
            shapes, simulated,
            "{mode:?}: party {me}'s view is not explained by its stated leakage"
        );
        if me == i0 {
            initiator_shapes = shapes;
        }
    }
    initiator_shapes
}

/// Both worlds (same initiator input, set sizes and intersection; different other sets)
/// in both result modes.
async fn check_two_worlds(world_a: Vec<Vec<String>>, world_b: Vec<Vec<String>>, i0: usize) {
    for mode in [OutputMode::Initiator, OutputMode::SizeOnly] {
        let a = check_world(&world_a, i0, mode).await;
        let b = check_world(&world_b, i0, mode).await;
        assert_eq!(
            a, b,
            "{mode:?}: the initiator can tell the two worlds apart"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_party_views_hold_only_the_stated_leakage() {
    // a initiates; b is its successor (its set travels backwards); c combines. In world A
    // the initiator shares 200 IDs with b and with c, in world B 150; the intersection
    // (ids 100..250) and every set size are the same.
    let world_a = vec![ids(0..300), ids(100..450), ids(50..250)];
    let world_b = vec![
        ids(0..300),
        union(&[100..250, 1000..1050, 2000..2150]),
        union(&[100..250, 1000..1050]),
    ];
    check_two_worlds(world_a, world_b, 0).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn four_party_views_hold_only_the_stated_leakage() {
    // b initiates; c's set travels backwards; d combines; a is b's predecessor.
    let world_a = vec![ids(75..400), ids(0..300), ids(100..450), ids(50..250)];
    let world_b = vec![
        union(&[100..250, 3000..3175]),
        ids(0..300),
        union(&[100..250, 3000..3200]),
        union(&[100..250, 3000..3050]),
    ];
    check_two_worlds(world_a, world_b, 1).await;
}
