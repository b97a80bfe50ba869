//! The Clopper–Pearson upper confidence bound on a failure probability.

/// The confidence level's complement: a one-sided 95% bound.
const ALPHA: f64 = 0.05;

/// The one-sided 95% upper confidence bound on a failure rate after
/// `failures` failures in `n` trials (Clopper–Pearson; about 3/n with none).
///
/// It is the `p` with `P(X <= failures | n, p) = 0.05`. With no failure
/// that is `1 - 0.05^(1/n)`; otherwise it is found by bisection on the
/// binomial CDF, which is computed in log space (exact to rounding for any
/// `n` a run can reach, tested up to 10^7).
pub fn failure_upper_bound(failures: u64, n: u64) -> f64 {
    if n == 0 || failures >= n {
        return 1.0;
    }
    if failures == 0 {
        // (1 - p)^n = alpha  =>  p = 1 - alpha^(1/n), without cancellation.
        return -(ALPHA.ln() / n as f64).exp_m1();
    }
    // At p = k/n the CDF is at least about 1/2 (the median of a binomial
    // is within one of its mean), and at p = 1 it is 0: the root lies in
    // between, where the terms of the CDF grow up to the k-th (see
    // `binomial_cdf`).
    let mut lo = failures as f64 / n as f64;
    let mut hi = 1.0_f64;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if binomial_cdf(failures, n, mid) > ALPHA {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-13 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// `P(X <= k)` for `X ~ Binomial(n, p)`, with `0 < k < n`, `0 < p < 1`
/// and `p >= k/n` (where the bisection looks).
///
/// Sums the terms from the k-th down, each from the previous by their
/// ratio, relative to the k-th (itself computed in log space). For
/// `p >= k/n` the mode is at or above `k`, so the k-th term is the largest
/// of those summed and the rest fall off within a few standard deviations:
/// the loop stops after `O(sqrt(k))` terms. (For smaller `p` the sum is
/// still right until it overflows, and then it reads as 1.)
pub(crate) fn binomial_cdf(k: u64, n: u64, p: f64) -> f64 {
    debug_assert!(k < n && p > 0.0 && p < 1.0);
    let log_top = ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (-p).ln_1p();
    let odds_down = (1.0 - p) / p;
    let mut term = 1.0_f64;
    let mut sum = 1.0_f64;
    let mut i = k;
    while i > 0 {
        // term(i - 1) / term(i) = i / (n - i + 1) * (1 - p) / p
        term *= i as f64 / (n - i + 1) as f64 * odds_down;
        sum += term;
        if term <= sum * 1e-17 || !sum.is_finite() {
            break;
        }
        i -= 1;
    }
    (log_top + sum.ln()).exp().min(1.0)
}

/// `ln C(n, k)`.
fn ln_choose(n: u64, k: u64) -> f64 {
    ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k)
}

/// `ln(n!)`: a product for small `n`, Stirling's series (error below
/// 1e-16 relative) from 20 on.
fn ln_factorial(n: u64) -> f64 {
    if n < 20 {
        return (2..=n).map(|i| i as f64).product::<f64>().ln();
    }
    let x = n as f64;
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)));
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + series
}
