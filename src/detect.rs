//! Statistical tests: pure functions and small state machines over accumulators.
//!
//! * Error rates, candidate vs concurrent baseline: the conditional Poisson-process likelihood
//!   of Lindon, Sanden & Shirikian, "Rapid Regression Detection in Software Deployments through
//!   Sequential Testing" (KDD 2022, arXiv 2205.14762, §3): given the traffic each arm served in a
//!   tick, each error belongs to the candidate with probability `ρr / (ρr + 1 − ρ)`, where `ρ` is
//!   the candidate's traffic share and `r` the ratio of error rates. We mix the likelihood ratio
//!   over a grid of ratios; the mixture is a non-negative supermartingale under `r ≤ 1`, so by
//!   Ville's inequality rejecting when it reaches `1/α` keeps the false-rollback probability ≤ α
//!   however often it is looked at. Conditioning on exposure per tick makes the test valid for
//!   any traffic split, including one that changes over time; since the hypergeometric law is
//!   dominated by the binomial in convex order (Hoeffding 1963), conditioning on requests rather
//!   than on a Poisson clock only makes it conservative.
//! * Error rates after a full rollout: a one-sample likelihood-ratio mixture of the candidate's
//!   rate against an upper confidence bound of the baseline's rate before the switch.
//! * Accuracy: Beta–binomial mixture confidence sequences (Robbins 1970; Howard et al.,
//!   "Time-uniform, nonparametric, nonasymptotic confidence sequences", AoS 2021, §3), the
//!   mixture centred on each hypothesised accuracy.
//! * Drift: the population stability index on quantile bins of the reference. Unlike a KS or
//!   χ² p-value, PSI estimates a fixed divergence, so its false-alarm rate falls, not grows,
//!   with sample size.

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, n = 9; relative error < 1e-13).
pub fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// `ln B(a, b)`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// Whether this thread's floating-point unit rounds to nearest, as every statistic here
/// assumes (the constants are folded at compile time, the divisions run now). A platform that
/// changes the rounding mode under a process makes its evidence differ from `replay`'s in the
/// last digits.
pub fn rounds_to_nearest() -> bool {
    let (one, two, three) = (std::hint::black_box(1.0f64), std::hint::black_box(2.0f64), std::hint::black_box(3.0f64));
    one / three == 1.0 / 3.0 && two / three == 2.0 / 3.0 && -one / three == -1.0 / 3.0 && -two / three == -2.0 / 3.0
}

/// `ln Σ exp(x)`, stably; on the stack for the grids the tests mix over (≤ 64 terms).
pub(crate) fn log_sum_exp(xs: impl Iterator<Item = f64>) -> f64 {
    let v: smallvec::SmallVec<[f64; 64]> = xs.collect();
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Ratios `from, from·f, from·f², …` up to `to` (inclusive, approximately).
pub fn geometric_grid(from: f64, to: f64, factor: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut r = from;
    while r <= to * 1.0001 {
        out.push(r);
        r *= factor;
    }
    out
}

/// Running conditional log-likelihood `ℓ(r) = x_c ln r − Σ_t x_t ln(1 + ρ_t (r − 1))` of the
/// error-rate ratio `r` of a candidate against a concurrent baseline, on a grid of ratios.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RatioLikelihood {
    /// The grid of ratios.
    pub ratios: Vec<f64>,
    /// Errors of the candidate, over ticks where the baseline also served.
    pub candidate_errors: u64,
    /// Errors of both arms, over the same ticks.
    pub total_errors: u64,
    /// `Σ_t x_t ln(1 + ρ_t (r − 1))` per ratio.
    sums: Vec<f64>,
}

impl RatioLikelihood {
    /// Starts with no data on the given grid.
    pub fn new(ratios: Vec<f64>) -> Self {
        let n = ratios.len();
        RatioLikelihood { ratios, candidate_errors: 0, total_errors: 0, sums: vec![0.0; n] }
    }

    /// Adds one tick: traffic served by each arm (errors included) and errors of each arm.
    /// Returns whether the likelihood changed (a tick without errors leaves it as it was).
    pub fn update(&mut self, cand_events: u64, base_events: u64, cand_errors: u64, base_errors: u64) -> bool {
        let x = cand_errors + base_errors;
        if x == 0 || cand_events == 0 || base_events == 0 {
            // No error, or only one arm served: the tick carries no information on r.
            return false;
        }
        let rho = cand_events as f64 / (cand_events + base_events) as f64;
        self.candidate_errors += cand_errors;
        self.total_errors += x;
        let xf = x as f64;
        for (s, r) in self.sums.iter_mut().zip(&self.ratios) {
            *s += xf * (rho * (r - 1.0)).ln_1p();
        }
        true
    }

    /// `ℓ(r_k)`.
    pub fn log_l(&self, k: usize) -> f64 {
        self.candidate_errors as f64 * self.ratios[k].ln() - self.sums[k]
    }

    /// `ln` of the uniform mixture over `alternatives` (grid indices) of `L(r_k) / L(r_null)`.
    pub fn log_e_value(&self, alternatives: &[usize], null: usize) -> f64 {
        let l0 = self.log_l(null);
        let lw = -(alternatives.len() as f64).ln();
        log_sum_exp(alternatives.iter().map(|&k| self.log_l(k) - l0 + lw))
    }
}

/// `ln` of the uniform mixture over `alternatives` of the Bernoulli likelihood ratio
/// `L(p_k) / L(p0)` for `errors` out of `events`.
pub fn one_sample_log_e_value(errors: u64, events: u64, p0: f64, alternatives: &[f64]) -> f64 {
    if events == 0 || alternatives.is_empty() {
        return 0.0;
    }
    let x = errors as f64;
    let y = (events - errors.min(events)) as f64;
    let ll = |p: f64| x * p.ln() + y * (-p).ln_1p();
    let l0 = ll(p0);
    let lw = -(alternatives.len() as f64).ln();
    log_sum_exp(alternatives.iter().map(|&p| ll(p) - l0 + lw))
}

/// Bernoulli Kullback–Leibler divergence `KL(p ‖ q)`.
fn kl_bernoulli(p: f64, q: f64) -> f64 {
    let term = |a: f64, b: f64| if a <= 0.0 { 0.0 } else { a * (a / b).ln() };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// Chernoff (KL) confidence bounds for a binomial proportion from a fixed sample: the set of
/// `p` with `n·KL(p̂ ‖ p) ≤ ln(1/δ)`, each side holding with probability ≥ 1 − δ.
pub fn kl_bounds(successes: u64, trials: u64, delta: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let ph = successes as f64 / n;
    let budget = (1.0 / delta).ln() / n;
    let bisect = |mut lo: f64, mut hi: f64, inside_at_lo: bool| {
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            let inside = kl_bernoulli(ph, mid) <= budget;
            if inside == inside_at_lo {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    };
    let upper = if ph >= 1.0 { 1.0 } else { bisect(ph, 1.0 - 1e-12, true) };
    let lower = if ph <= 0.0 { 0.0 } else { bisect(ph, 1e-12, true) };
    (lower, upper)
}

/// Prior observations in the mixing Beta of [`beta_binomial_cs`]: Beta(κp, κ(1 − p)) spreads
/// the alternatives over about ±√(p(1 − p)/κ) around the hypothesised `p`, the effect a few
/// hundred to tens of thousands of labels can show. Against the Jeffreys mixture Beta(½, ½),
/// whose mass is spread over all of [0, 1], the interval is 10–14% narrower from 1,000 to
/// 30,000 trials at p = 0.8–0.9 and about as wide at 300; below 100 trials it is wider.
pub const CS_PRIOR_CONCENTRATION: f64 = 50.0;

/// `ln` of the mixture likelihood ratio `∫ L(q) dBeta(κp, κ(1 − p))(q) / L(p)` for
/// `successes` out of `successes + failures`: under `p`, a martingale with mean 1.
fn log_mixture_ratio(successes: f64, failures: f64, p: f64) -> f64 {
    let (a, b) = (CS_PRIOR_CONCENTRATION * p, CS_PRIOR_CONCENTRATION * (1.0 - p));
    ln_beta(a + successes, b + failures) - ln_beta(a, b) - successes * p.ln() - failures * (-p).ln_1p()
}

/// Time-uniform confidence sequence for a Bernoulli mean: every `p` whose Beta–binomial
/// mixture likelihood ratio stays below `1/δ` (Robbins 1970; Howard et al. 2021, §3). Holds at
/// all sample sizes simultaneously with probability ≥ 1 − δ: for each `p`, the ratio is a
/// non-negative martingale with mean 1 under `p`, and Ville's inequality bounds the chance it
/// ever reaches `1/δ`. The mixing Beta may depend on the `p` being tested (never on the data),
/// so it is centred on `p` with [`CS_PRIOR_CONCENTRATION`] prior observations rather than
/// spread over [0, 1]. Away from the estimate, the log-ratio only grows once it is above ½, so
/// for δ < 0.6 the set is an interval and bisection finds its ends.
pub fn beta_binomial_cs(successes: u64, trials: u64, delta: f64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let x = successes as f64;
    let y = (trials - successes.min(trials)) as f64;
    let thr = (1.0 / delta).ln();
    let log_m = |p: f64| log_mixture_ratio(x, y, p);
    let ph = x / (x + y);
    let bisect = |mut inside: f64, mut outside: f64| {
        for _ in 0..60 {
            let mid = 0.5 * (inside + outside);
            if log_m(mid) < thr {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        inside
    };
    let lower = if log_m(1e-12) < thr { 0.0 } else { bisect(ph.max(1e-12), 1e-12) };
    let upper = if log_m(1.0 - 1e-12) < thr { 1.0 } else { bisect(ph.min(1.0 - 1e-12), 1.0 - 1e-12) };
    (lower, upper)
}

/// Population stability index `Σ (c_i − r_i) ln(c_i / r_i)` between reference probabilities and
/// current counts. Empty cells are smoothed with half a count so that a category never seen
/// in the reference gives a large but finite contribution.
pub fn psi(reference: &[f64], reference_n: u64, current: &[u64]) -> f64 {
    let n: u64 = current.iter().sum();
    if n == 0 || reference_n == 0 {
        return 0.0;
    }
    let k = reference.len().max(1) as f64;
    let ref_floor = 0.5 / reference_n as f64;
    let cur_n = n as f64 + 0.5 * k;
    let ref_total: f64 = reference.iter().map(|&r| r.max(ref_floor)).sum();
    let mut s = 0.0;
    for (r, &c) in reference.iter().zip(current) {
        let r = r.max(ref_floor) / ref_total;
        let c = (c as f64 + 0.5) / cur_n;
        s += (c - r) * (c / r).ln();
    }
    s
}

/// Two-sample chi-square test of homogeneity between a reference (bin shares of
/// `reference_n` events) and current bin counts: the upper-tail p-value, with one degree of
/// freedom less than the bins holding anything on either side.
pub fn homogeneity_p_value(reference: &[f64], reference_n: u64, current: &[u64]) -> f64 {
    let n: u64 = current.iter().sum();
    let ref_total: f64 = reference.iter().sum();
    if n == 0 || reference_n == 0 || ref_total <= 0.0 {
        return 1.0;
    }
    let (m, n) = (reference_n as f64, n as f64);
    let mut stat = 0.0;
    let mut bins = 0u32;
    for (r, &c) in reference.iter().zip(current) {
        let (ro, co) = (r / ref_total * m, c as f64);
        let total = ro + co;
        if total <= 0.0 {
            continue;
        }
        bins += 1;
        let (er, ec) = (total * m / (m + n), total * n / (m + n));
        stat += (ro - er).powi(2) / er + (co - ec).powi(2) / ec;
    }
    if bins < 2 {
        return 1.0;
    }
    chi_square_sf(stat, f64::from(bins - 1))
}

/// Upper tail of the chi-square distribution with `df` degrees of freedom.
pub fn chi_square_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    let (a, x) = (df / 2.0, x / 2.0);
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series for the lower regularised gamma function.
        let (mut term, mut sum, mut k) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            k += 1.0;
            term *= x / k;
            sum += term;
            if term < sum * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_front.exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction for the upper one (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -f64::from(i) * (f64::from(i) - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// Interior quantile cut points of a fine histogram (see [`crate::stats::fine_bin`]) for `bins`
/// equal-mass bins: the fine bins at which each new coarse bin starts, ascending, without
/// duplicates (heavy ties merge bins).
pub fn quantile_cuts(fine: impl IntoIterator<Item = (i16, u32)>, bins: usize) -> Vec<i16> {
    let mut sorted: Vec<(i16, u32)> = fine.into_iter().collect();
    sorted.sort_unstable();
    let total: u64 = sorted.iter().map(|&(_, c)| u64::from(c)).sum();
    let mut cuts = Vec::with_capacity(bins);
    if total == 0 || bins < 2 {
        return cuts;
    }
    let mut cum = 0u64;
    let mut next = 1;
    for (i, &(_, c)) in sorted.iter().enumerate() {
        cum += u64::from(c);
        while next < bins && cum * bins as u64 >= total * next as u64 {
            next += 1;
            if let Some(&(following, _)) = sorted.get(i + 1) {
                if cuts.last() != Some(&following) {
                    cuts.push(following);
                }
            }
        }
    }
    cuts
}

/// Coarse bin of a fine bin given cut points from [`quantile_cuts`].
#[inline]
pub fn coarse_bin(cuts: &[i16], fine: i16) -> usize {
    cuts.partition_point(|&c| c <= fine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut f = 1.0f64;
        for n in 1..20 {
            assert!((ln_gamma(f64::from(n)) - f.ln()).abs() < 1e-10, "{n}");
            f *= f64::from(n);
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-10);
    }

    #[test]
    fn ratio_test_is_valid_under_the_null() {
        // Continuous monitoring of 400 identical arms (10% traffic split, 5% errors):
        // the mixture should cross 1/α = 100 in well under 1% … 2% of runs.
        let mut rng = Pcg64::seed_from_u64(7);
        let grid = geometric_grid(1.5, 20.0, 1.25);
        let alts: Vec<usize> = (0..grid.len()).collect();
        let mut crossed = 0;
        for _ in 0..400 {
            let mut t = RatioLikelihood::new([vec![1.0], grid.clone()].concat());
            let alts1: Vec<usize> = alts.iter().map(|k| k + 1).collect();
            for _ in 0..600 {
                let (nc, nb) = (5u64, 45u64);
                let xc = (0..nc).filter(|_| rng.gen::<f64>() < 0.05).count() as u64;
                let xb = (0..nb).filter(|_| rng.gen::<f64>() < 0.05).count() as u64;
                t.update(nc, nb, xc, xb);
                if t.log_e_value(&alts1, 0) >= 100f64.ln() {
                    crossed += 1;
                    break;
                }
            }
        }
        assert!(crossed <= 8, "crossed {crossed} of 400");
    }

    #[test]
    fn ratio_test_detects_a_fourfold_rise() {
        let mut rng = Pcg64::seed_from_u64(3);
        let grid = [vec![1.0], geometric_grid(1.5, 20.0, 1.25)].concat();
        let alts: Vec<usize> = (1..grid.len()).collect();
        let mut t = RatioLikelihood::new(grid);
        let mut when = None;
        for sec in 0..600 {
            let xc = (0..5).filter(|_| rng.gen::<f64>() < 0.04).count() as u64;
            let xb = (0..45).filter(|_| rng.gen::<f64>() < 0.01).count() as u64;
            t.update(5, 45, xc, xb);
            if t.log_e_value(&alts, 0) >= 100f64.ln() {
                when = Some(sec);
                break;
            }
        }
        let when = when.expect("detected");
        assert!(when < 240, "took {when} s");
    }

    #[test]
    fn confidence_bounds_cover() {
        let (lo, hi) = kl_bounds(10, 1000, 0.01);
        assert!(lo < 0.01 && hi > 0.01 && hi < 0.03, "{lo} {hi}");
        let (lo, hi) = beta_binomial_cs(900, 1000, 0.005);
        assert!(lo < 0.9 && lo > 0.85 && hi > 0.9 && hi < 0.95, "{lo} {hi}");
        assert_eq!(beta_binomial_cs(0, 0, 0.01), (0.0, 1.0));
        let (lo, _) = beta_binomial_cs(0, 50, 0.01);
        assert_eq!(lo, 0.0);
    }

    #[test]
    fn accuracy_confidence_sequence_covers_under_continuous_monitoring() {
        // Looked at after every observation, the true mean leaves the sequence in at most δ of
        // the runs (here 300 runs of 4,000 observations per mean, δ = 0.1; binomial slack).
        let mut rng = Pcg64::seed_from_u64(11);
        let delta: f64 = 0.1;
        let thr = (1.0 / delta).ln();
        for p in [0.6, 0.9, 0.98] {
            let mut missed = 0;
            for run in 0..300 {
                let (mut x, mut y) = (0u64, 0u64);
                for n in 1..=4000u64 {
                    if rng.gen::<f64>() < p {
                        x += 1;
                    } else {
                        y += 1;
                    }
                    let outside = log_mixture_ratio(x as f64, y as f64, p) >= thr;
                    if n % 250 == 0 || outside {
                        let (lo, hi) = beta_binomial_cs(x, n, delta);
                        assert_eq!(!(lo..=hi).contains(&p), outside, "p {p} run {run} n {n}: [{lo}, {hi}]");
                    }
                    if outside {
                        missed += 1;
                        break;
                    }
                }
            }
            assert!(missed <= 40, "p {p}: left the sequence in {missed} of 300 runs");
        }
    }

    #[test]
    fn accuracy_confidence_sequence_is_an_interval() {
        // Moving away from the estimate, the log mixture ratio never falls once above ½.
        for n in [1u64, 2, 5, 20, 100, 300, 1000, 10_000, 100_000] {
            for x in (0..=n).step_by((n / 20).max(1) as usize) {
                let (xf, yf) = (x as f64, (n - x) as f64);
                let ph = xf / n as f64;
                for towards in [0.0, 1.0] {
                    let mut last = f64::NEG_INFINITY;
                    for i in 1..1000 {
                        let p = ph + (towards - ph) * (f64::from(i) / 1000.0).powi(2);
                        if p <= 1e-12 || p >= 1.0 - 1e-12 {
                            break;
                        }
                        let v = log_mixture_ratio(xf, yf, p);
                        if last > 0.5 {
                            assert!(v >= last - 1e-9, "n {n} x {x} p {p}: {v} after {last}");
                        }
                        last = v;
                    }
                }
            }
        }
    }

    #[test]
    fn chi_square_tail_matches_tables() {
        // Critical values: df 1 at 3.841 and df 9 at 21.666 (p 0.05, 0.01), df 4 at 18.467 (0.001).
        for (x, df, p) in [(3.841, 1.0, 0.05), (21.666, 9.0, 0.01), (18.467, 4.0, 0.001), (0.0, 3.0, 1.0)] {
            let got = chi_square_sf(x, df);
            assert!((got - p).abs() < p * 0.01 + 1e-12, "chi2({x}, {df}) = {got}, want {p}");
        }
        let same = homogeneity_p_value(&[0.5, 0.3, 0.2], 1000, &[500, 300, 200]);
        assert!(same > 0.99, "{same}");
        let moved = homogeneity_p_value(&[0.5, 0.3, 0.2], 1000, &[300, 500, 200]);
        assert!(moved < 1e-10, "{moved}");
    }

    #[test]
    fn psi_of_identical_is_small_and_of_swap_is_large() {
        let r = [0.45, 0.2, 0.2, 0.15];
        assert!(psi(&r, 10_000, &[4500, 2000, 2000, 1500]) < 0.001);
        let swapped = psi(&r, 10_000, &[2000, 4500, 2000, 1500]);
        assert!((swapped - 0.405).abs() < 0.01, "{swapped}");
    }

    #[test]
    fn quantile_cuts_split_mass_evenly() {
        // In any order.
        let cuts = quantile_cuts((1..=100i16).rev().map(|i| (i, 10)), 4);
        assert_eq!(cuts, vec![26, 51, 76]);
        assert_eq!(coarse_bin(&cuts, 25), 0);
        assert_eq!(coarse_bin(&cuts, 26), 1);
        assert_eq!(coarse_bin(&cuts, 100), 3);
    }
}
