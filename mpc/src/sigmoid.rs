//! Piecewise-linear function approximations evaluated on shares.
//!
//! A [`Spline`] with thresholds `t₁ < … < t_m` and pieces `fₖ(x) = αₖ + βₖ·x`
//! (k = 0..m) is `f₀(x)` for `x < t₁`, `fₖ(x)` on `[tₖ, tₖ₊₁)` and `f_m(x)` for `x ≥ t_m`.
//! On shares it is `f₀(x) + Σₖ [x ≥ tₖ]·(fₖ − fₖ₋₁)(x)` — one secure comparison per
//! threshold and one Beaver multiplication per threshold with a slope change (see
//! [`crate::Engine::splines`]).
//!
//! * [`Spline::seg3`]: the SEG3 sigmoid, 0 / 0.5 + x/4 / 1 with cuts at ±2
//!   (max abs error 0.1192, at x = ±2).
//! * [`Spline::sigmoid7`]: a 7-piece interpolating spline through σ at
//!   −5, −2.5, −1, 1, 2.5, 5 with 0 / 1 outside (max abs error below 0.025).
//! * [`Spline::softplus8`]: log(1 + eˣ) with knots −5, −2.5, −1, 0, 1, 2.5, 5, used for the
//!   log-loss `softplus(z) − y·z` (max abs error below 0.05).

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// log(1 + eˣ), computed stably.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// A piecewise-linear function (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Spline {
    thresholds: Vec<f64>,
    pieces: Vec<(f64, f64)>,
}

impl Spline {
    /// Builds a spline; `pieces.len()` must be `thresholds.len() + 1` and thresholds strictly
    /// increasing and finite.
    pub fn new(thresholds: Vec<f64>, pieces: Vec<(f64, f64)>) -> Option<Self> {
        let ok = pieces.len() == thresholds.len() + 1
            && thresholds.iter().all(|t| t.is_finite())
            && thresholds.windows(2).all(|w| w[0] < w[1])
            && pieces.iter().all(|(a, b)| a.is_finite() && b.is_finite());
        ok.then_some(Self { thresholds, pieces })
    }

    /// Interpolates `f` at `knots`, with the given outer pieces.
    fn interpolate(
        knots: &[f64],
        f: impl Fn(f64) -> f64,
        left: (f64, f64),
        right: (f64, f64),
    ) -> Self {
        let mut pieces = vec![left];
        for w in knots.windows(2) {
            let slope = (f(w[1]) - f(w[0])) / (w[1] - w[0]);
            pieces.push((f(w[0]) - slope * w[0], slope));
        }
        pieces.push(right);
        Self {
            thresholds: knots.to_vec(),
            pieces,
        }
    }

    /// SEG3: 0 for x < −2, 0.5 + x/4 on [−2, 2), 1 for x ≥ 2.
    pub fn seg3() -> Self {
        Self {
            thresholds: vec![-2.0, 2.0],
            pieces: vec![(0.0, 0.0), (0.5, 0.25), (1.0, 0.0)],
        }
    }

    /// The 7-piece sigmoid spline.
    pub fn sigmoid7() -> Self {
        Self::interpolate(
            &[-5.0, -2.5, -1.0, 1.0, 2.5, 5.0],
            sigmoid,
            (0.0, 0.0),
            (1.0, 0.0),
        )
    }

    /// The 8-piece softplus spline.
    pub fn softplus8() -> Self {
        Self::interpolate(
            &[-5.0, -2.5, -1.0, 0.0, 1.0, 2.5, 5.0],
            softplus,
            (0.0, 0.0),
            (0.0, 1.0),
        )
    }

    /// Thresholds.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// Pieces `(α, β)`.
    pub fn pieces(&self) -> &[(f64, f64)] {
        &self.pieces
    }

    /// Plaintext evaluation.
    pub fn eval(&self, x: f64) -> f64 {
        let k = self.thresholds.iter().take_while(|&&t| x >= t).count();
        let (a, b) = self.pieces[k];
        a + b * x
    }

    /// Largest |spline − f| on a fine grid over [lo, hi].
    pub fn max_error(&self, f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
        let steps = 20_000;
        (0..=steps)
            .map(|i| lo + (hi - lo) * i as f64 / steps as f64)
            .map(|x| (self.eval(x) - f(x)).abs())
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_error_bounds_hold() {
        let e3 = Spline::seg3().max_error(sigmoid, -20.0, 20.0);
        assert!((e3 - 0.1192).abs() < 1e-3, "{e3}");
        let e7 = Spline::sigmoid7().max_error(sigmoid, -20.0, 20.0);
        assert!(e7 < 0.025, "{e7}");
        let es = Spline::softplus8().max_error(softplus, -30.0, 30.0);
        assert!(es < 0.05, "{es}");
        assert_eq!(Spline::sigmoid7().pieces().len(), 7);
    }

    #[test]
    fn seg3_pieces() {
        let s = Spline::seg3();
        assert_eq!(s.eval(-3.0), 0.0);
        assert_eq!(s.eval(0.0), 0.5);
        assert_eq!(s.eval(1.0), 0.75);
        assert_eq!(s.eval(2.0), 1.0);
        assert!(Spline::new(vec![1.0, 0.0], vec![(0.0, 0.0); 3]).is_none());
        assert!(Spline::new(vec![0.0], vec![(0.0, 0.0); 2]).is_some());
    }
}
