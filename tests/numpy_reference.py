"""An independent NumPy float32 implementation of the neurons and the network, used as a test oracle.

Written from the equations (paper Algorithm 1, appendix A.2; docs/concepts/) as the authors'
code evaluates them, not from brfjax: every operation is a separate IEEE float32 NumPy
operation in that code's evaluation order; weights in the reference (PyTorch) layout; decays
with float64 exp rounded to float32 (docs/numerics.md).
"""

import numpy as np

f32 = np.float32
DT = f32(0.01)


def heaviside(x):
    return (x > 0).astype(f32)


def decay(tau):
    return np.exp((f32(-1.0) / np.abs(tau)).astype(np.float64)).astype(f32)


def boundary(omega):
    s = DT * np.abs(omega)
    r = f32(1.0) - s * s
    with np.errstate(invalid="ignore"):
        return (f32(-1.0) + np.sqrt(r)) / DT


def brf_step(omega, b_offset, z, u, v, q, current):
    omega, b_offset = np.abs(omega), np.abs(b_offset)
    b = (boundary(omega) - b_offset) - q
    u_new = ((u + (b * u) * DT) - (omega * v) * DT) + current * DT
    v_new = (v + (omega * u) * DT) + (b * v) * DT
    z = heaviside((u_new - f32(1.0)) - q)
    return z, u_new, v_new, q * f32(0.9) + z


def rf_step(omega, b_offset, z, u, v, current):
    omega, b = np.abs(omega), -np.abs(b_offset)
    u_new = ((u + (b * u) * DT) - (omega * v) * DT) + current * DT
    v_new = (v + (omega * u) * DT) + (b * v) * DT
    return heaviside(u_new - f32(1.0)), u_new, v_new


def bhrf_step(omega, b_offset, z, u, v, q, current):
    omega, b_offset = np.abs(omega), np.abs(b_offset)
    w2 = omega * omega
    b = (w2 * f32(0.005) + b_offset) + q
    v_new = v + u * DT
    u_new = ((u + current * DT) - (b * u) * f32(0.02)) - (w2 * v_new) * DT
    z = heaviside((u_new - f32(1.0)) - q)
    return z, u_new, v_new, q * f32(0.9) + z


def alif_step(tau_mem, tau_adp, z, u, a, current):
    alpha, rho = decay(tau_mem), decay(tau_adp)
    a = a * rho + z * (f32(1.0) - rho)
    theta = f32(0.01) + a * f32(1.8)
    u_pre = u * alpha + current * (f32(1.0) - alpha)
    z = heaviside(u_pre - theta)
    return z, u_pre - z * theta, a


def li_step(tau, o, current):
    alpha = decay(tau)
    return o * alpha + current * (f32(1.0) - alpha)


def run_network(state_dict, neuron, x, sub_seq_length=0):
    """x: (T, B, I) float32. Returns (outputs (T-sub, B, C), spikes (T, B, H))."""
    w = state_dict["hidden.linear.weight"].astype(f32)
    if "hidden.linear.mask" in state_dict:
        w = w * state_dict["hidden.linear.mask"]
    w_out = state_dict["out.linear.weight"].astype(f32)
    steps, batch, _ = x.shape
    hidden = w.shape[0]
    state = [np.zeros((batch, hidden), f32) for _ in range(4 if neuron == "brf" else 3)]
    if neuron in ("brf", "vrf"):
        params = (state_dict["hidden.omega"], state_dict["hidden.b_offset"])
        step = brf_step if neuron == "brf" else rf_step
    else:
        params = (state_dict["hidden.tau_mem"], state_dict["hidden.tau_adp"])
        step = alif_step
    o = np.zeros((batch, w_out.shape[0]), f32)
    outputs, spikes = [], []
    for t in range(steps):
        current = np.concatenate([x[t], state[0]], axis=1) @ w.T
        state = step(*params, *state, current)
        o = li_step(state_dict["out.tau_mem"], o, state[0] @ w_out.T)
        spikes.append(state[0])
        if t >= sub_seq_length:
            outputs.append(o)
    return np.stack(outputs), np.stack(spikes)
