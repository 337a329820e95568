"""The spread network: message passing over a ``GraphBatch`` -> each node's probability of being reached.

Per node the input is: seed indicator, log(1 + degree), 1 / (1 + degree), the process (one-hot) and
its parameters, and optionally a *prior*: the dynamic-message-passing (DMP) estimate of the reach
probability for the process's transmissibility, which is exact on trees and ignores the correlations
that loops create. A linear encoder lifts the input to ``hidden`` channels; then ONE message-passing
layer is applied ``iterations`` times (shared weights, so more rounds can run on larger graphs; x_v is the
lifted input):

    h_v <- LayerNorm(h_v + MLP([h_v, mean_{u~v} W h_u, x_v]))

and a small MLP reads each node's logit. Sums and means over neighbours are symmetric functions,
so relabelling the nodes relabels the output the same way (permutation equivariance). For the
stochastic processes a seed is reached by definition: its output is 1.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from triad.heads.spread.batch import GraphBatch
from triad.heads.spread.config import SpreadModel
from triad.heads.spread.features import node_cycle_features
from triad.heads.spread.simulate import PROCESSES

HEAT = PROCESSES.index("heat")
CAPPED = [PROCESSES.index("ic"), PROCESSES.index("sir")]  # where the DMP prior bounds the reach probability
N_FEATURES = 3 + len(PROCESSES) + 4 + 1
PRIOR_FLOOR = 1e-5  # residual: the prior is clipped to [floor, 1 - floor] before its logit (a 10,000-node graph
# of far-away nodes then adds at most about 0.1 node of spread before the correction)
PRIOR_ROUNDS = 100  # at least this many allowed; DMP stops earlier once no message moves by PRIOR_TOLERANCE
PRIOR_WORK = 2e8  # ... and more on smaller graphs: up to this many message updates (rounds x directed edges)
PRIOR_MAX_ROUNDS = 5000  # ... but never more rounds than this
PRIOR_TOLERANCE = 1e-6  # DMP has converged when no message moved by more in the last round
PRIOR_SLOW = 0.8  # a round that moves the messages by more than this share of the last round's move starts the
# Anderson acceleration (``_Anderson``): near the critical point plain rounds shrink the move by about 1% each
PRIOR_DEPTH = 2  # rounds of history the acceleration extrapolates from
PRIOR_ACCELERATE_EDGES = 100_000  # directed edges from which the acceleration is on by default: below, a round
# costs well under a millisecond and the acceleration's own work per round outweighs the rounds it saves (on
# 100-300-node test questions it made the prior 1.9 times slower)


def transmissibility(process: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(N,) probability that an infected node ever infects a given neighbour (0 for heat).

    IC: ``p``. SIR/SIS: with infectious time D ~ Geometric(gamma) steps,
    ``1 - E[(1 - beta)**D] = 1 - gamma (1 - beta) / (1 - (1 - gamma)(1 - beta))`` (SIS ignores reinfection).
    """
    p, beta, gamma = params[:, 0], params[:, 1], params[:, 2]
    escape = gamma * (1 - beta) / (1 - (1 - gamma) * (1 - beta)).clamp_min(1e-6)
    t = torch.where(process == PROCESSES.index("ic"), p, 1 - escape)
    return torch.where(process == HEAT, torch.zeros_like(t), t).clamp(0, 1)


class _Anderson:
    """Anderson acceleration of the DMP rounds, never below the plain round.

    A plain round maps messages m to g = G(m) with residual f = g - m. From the last ``PRIOR_DEPTH`` changes
    of g and f it takes the gamma that minimises |f - sum_i gamma_i df_i| (a PRIOR_DEPTH x PRIOR_DEPTH
    least-squares problem in float64) and moves to g - sum_i gamma_i dg_i, clipped to [0, 1] and to at least
    g while no message is above its fixed point. Started from the seeds, the plain rounds rise monotonically
    to the fixed point, so that floor keeps every step at or above where the plain iteration would be; a
    step that overshoots (some g below m) is free to come back down.

    Measured (``dmp_prior`` with and without it, 2 cores, one question from 5 seed nodes) on a 100,000-node,
    1,000,000-edge Barabasi-Albert graph: 0.41 s against 2.44 s at the critical point (where 100 plain rounds
    had not converged: 6e-5 from the fixed point, against 4e-6), 0.46 against 0.69 s at 0.8 p_c, 0.85-1.24 s
    against 1.15-1.77 s at 1.5-2 p_c, equal below. On 10,000-node lattices and ring lattices near and above
    p_c, where the slow part is the front moving one hop a round, it did not help and cost 20-40% more per
    round (tens of milliseconds); on 100-300-node questions its own work made the prior 1.9 times slower. Hence
    ``PRIOR_ACCELERATE_EDGES``.
    """

    def __init__(self, depth: int = PRIOR_DEPTH, below: float = PRIOR_TOLERANCE) -> None:
        self.depth = depth
        self.below = below
        self.g: list[np.ndarray] = []
        self.f: list[np.ndarray] = []
        self.started = False

    def step(self, message: np.ndarray, g: np.ndarray) -> np.ndarray:
        self.started = True
        self.g.append(g)
        self.f.append(g - message)
        if len(self.g) > self.depth + 1:
            self.g.pop(0)
            self.f.pop(0)
        if len(self.g) < 2:
            return g
        df = [b - a for a, b in zip(self.f, self.f[1:])]
        gram = np.array([[np.dot(a, b) for b in df] for a in df], dtype=np.float64)
        right = np.array([np.dot(a, self.f[-1]) for a in df], dtype=np.float64)
        gram += 1e-10 * max(np.trace(gram), 1e-30) * np.eye(len(df))
        try:
            gamma = np.linalg.solve(gram, right)
        except np.linalg.LinAlgError:
            return g
        if not np.all(np.isfinite(gamma)):
            return g
        step = g.copy()
        for weight, a, b in zip(gamma, self.g, self.g[1:]):
            step -= np.float32(weight) * (b - a)
        np.clip(step, 0.0, 1.0, out=step)
        if self.f[-1].min() >= -self.below:  # still below the fixed point: never behind the plain round
            np.maximum(step, g, out=step)
        return step


def prior_rounds(directed_edges: int) -> int:
    """How many DMP rounds a batch may take: PRIOR_ROUNDS, or more where PRIOR_WORK allows (up to
    PRIOR_MAX_ROUNDS). On spatial graphs the messages cross the graph one hop a round: a 10,000-node random
    geometric graph at 0.8 p_c needed 1,108 rounds to converge (0.9 s), and after 100 its expected size was
    off by up to 0.7 per node; a 100,000-node, 1,000,000-edge graph keeps the 100-round cap (2.5 s)."""
    return int(min(PRIOR_MAX_ROUNDS, max(PRIOR_ROUNDS, PRIOR_WORK // max(directed_edges, 1))))


def dmp_prior(
    batch: GraphBatch,
    rounds: int | None = None,
    tolerance: float = PRIOR_TOLERANCE,
    accelerate: bool | None = None,
) -> torch.Tensor:
    """(N,) dynamic message passing for a cascade with per-edge transmissibility T (no gradient flows).

    m[u->v] is the probability that u is reached without v's help; on a tree the fixed point is exact:
    m[u->v] = 1 - (1 - s_u) prod_{w~u, w != v} (1 - T m[w->u]),  P_v = 1 - (1 - s_v) prod_{u~v} (1 - T m[u->v]).

    Jacobi rounds until no message moves by ``tolerance`` (or ``rounds``; None: ``prior_rounds``), laid out for
    speed on large graphs: the edges grouped by source (``GraphBatch.by_source``), so the sum of log(1 - T m) into
    each node is a sequential ``add.reduceat`` over its block of reverse edges and spreading it back to the block is
    a ``repeat``; the only random access per round is one gather (each edge's reverse); float32 with in-place
    operations. Measured on a 100,000-node, 1,000,000-edge graph: about 4x faster per round than ``dmp_prior_dense``
    (the first version, float64 with a scatter and two gathers per round), with the same fixed point to 1e-5 (the
    tests compare them on small graphs). Once a round moves the messages by more than ``PRIOR_SLOW`` of the last
    round's move (slow convergence, as near the critical point), the rounds are Anderson-accelerated (``_Anderson``)
    on batches of ``PRIOR_ACCELERATE_EDGES`` directed edges or more (``accelerate`` True or False: always, never).
    """
    src = batch.src.numpy()
    seed = batch.seed.numpy()
    n = len(seed)
    if len(src) == 0:
        return batch.seed.clone()
    order, indptr = batch.by_source
    degree = np.diff(indptr)
    has_edges = degree > 0
    starts = indptr[:-1][has_edges]
    source = src[order]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    reverse = position[batch.rev.numpy()[order]]  # sorted position of each sorted edge's reverse
    t_edge = transmissibility(batch.process, batch.params).numpy().astype(np.float32)[source]
    keep = (1.0 - seed)[source]  # 0 on a seed's out-edges: a seed's message is 1
    message = seed[source].copy()
    log_q, log_in = np.empty_like(message), np.zeros(n, dtype=np.float32)
    updated = np.empty_like(message)

    def sum_in(message: np.ndarray) -> np.ndarray:
        """Each sorted edge u->v's log(1 - T m[v->u]), and fills log_in[u] = the sum over u's block."""
        np.multiply(t_edge, message, out=log_q)
        np.minimum(log_q, np.float32(1 - 1e-6), out=log_q)
        np.subtract(np.float32(1.0), log_q, out=log_q)
        np.log(log_q, out=log_q)  # log(1 - x) in float32 is 3x faster than log1p; error ~6e-8 per edge
        incoming = log_q[reverse]
        log_in[has_edges] = np.add.reduceat(incoming, starts)
        return incoming

    anderson = _Anderson()
    accelerate = len(src) >= PRIOR_ACCELERATE_EDGES if accelerate is None else accelerate
    previous_move = math.inf
    for _ in range(prior_rounds(len(src)) if rounds is None else rounds):
        incoming = sum_in(message)
        np.subtract(np.repeat(log_in, degree), incoming, out=updated)
        np.exp(updated, out=updated)
        np.multiply(updated, keep, out=updated)
        np.subtract(np.float32(1.0), updated, out=updated)
        moved = float(np.abs(updated - message).max())
        if moved < tolerance:
            message = updated
            break
        if accelerate and (anderson.started or moved > PRIOR_SLOW * previous_move):
            message = anderson.step(message, updated)
            updated = np.empty_like(message)
        else:
            message, updated = updated, message
        previous_move = moved
    sum_in(message)
    return torch.from_numpy(1.0 - (1.0 - seed) * np.exp(log_in))


def dmp_prior_dense(batch: GraphBatch, rounds: int = PRIOR_ROUNDS) -> torch.Tensor:
    """(N,) ``dmp_prior`` computed over every edge every round (the reference it is tested against).

    m[u->v] is the probability that u is reached without v's help; on a tree the fixed point is exact:
    m[u->v] = 1 - (1 - s_u) prod_{w~u, w != v} (1 - T m[w->u]),  P_v = 1 - (1 - s_v) prod_{u~v} (1 - T m[u->v]).

    Runs in NumPy float64: each round is a handful of tiny array operations, and NumPy's per-call
    overhead is a third of torch's, which is what a single 200-node question's latency is made of.
    """
    src, dst, rev = batch.src.numpy(), batch.dst.numpy(), batch.rev.numpy()
    seed = batch.seed.numpy().astype(np.float64)
    n = len(seed)
    t_edge = transmissibility(batch.process, batch.params).numpy().astype(np.float64)[src]
    unseeded_src = 1.0 - seed[src]

    def log_escape(message: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log(1 - T m) per edge, and its sum over each node's incoming edges."""
        log_q = np.log1p(-np.minimum(t_edge * message, 1 - 1e-6))
        return log_q, np.bincount(dst, weights=log_q, minlength=n)

    message = seed[src]
    for _ in range(rounds):
        log_q, log_in = log_escape(message)
        updated = 1.0 - unseeded_src * np.exp(log_in[src] - log_q[rev])
        converged = len(updated) == 0 or float(np.abs(updated - message).max()) < 1e-6
        message = updated
        if converged:
            break
    _, log_in = log_escape(message)
    return torch.from_numpy((1.0 - (1.0 - seed) * np.exp(log_in)).astype(np.float32))


def in_degree(batch: GraphBatch) -> torch.Tensor:
    """(N,) float32 number of edges into each node (its degree: edges are stored both ways)."""
    return torch.bincount(batch.dst, minlength=batch.n_nodes).float()


def mean_adjacency(batch: GraphBatch) -> torch.Tensor:
    """(N, N) sparse CSR matrix A with A[v, u] = 1 / deg(v) for each edge u -> v: ``A @ h`` is the
    mean of h over each node's neighbours (0 for an isolated node).

    Edges are stored both ways, so row v lists the targets of v's own out-edges: the rows are the
    sources in ``GraphBatch.by_source`` order, no second sort. CSR, not COO: torch coalesces a COO
    matrix inside every product; on 2,000,000 directed edges x 32 channels a CSR product measured
    0.1-0.15 s against 0.45-0.6 s for the COO one (2 threads, shared machine).
    """
    n = batch.n_nodes
    order, indptr = batch.by_source
    degree = torch.from_numpy(np.diff(indptr))
    values = (1.0 / degree.clamp_min(1).float()).repeat_interleave(degree)
    with warnings.catch_warnings():  # torch calls its sparse CSR support beta; the product is all we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(indptr), batch.dst[torch.from_numpy(order)], values, (n, n))


def node_features(batch: GraphBatch, prior: bool, cycles: bool = False) -> torch.Tensor:
    """(N, N_FEATURES) float32 input features (see the module docstring); with ``cycles``, (N, N_FEATURES + 2):
    each node's local clustering and log(1 + triangles through it) appended (``features.node_cycle_features``)."""
    degree = in_degree(batch)
    p, beta, gamma, t = batch.params.unbind(1)
    scaled = torch.stack([p, beta, gamma, torch.log1p(t)], 1)
    prior_value = dmp_prior(batch) if prior else torch.zeros_like(batch.seed)
    cycle = node_cycle_features(batch.n_nodes, batch.src.numpy(), batch.dst.numpy()) if cycles else None
    return torch.cat(
        [
            batch.seed[:, None],
            torch.log1p(degree)[:, None],
            (1 / (1 + degree))[:, None],
            nn.functional.one_hot(batch.process, len(PROCESSES)).float(),
            scaled,
            prior_value[:, None],
        ]
        + ([torch.from_numpy(cycle)] if cycles else []),
        1,
    )


class MessageLayer(nn.Module):
    """One round: messages W h_u, their mean over each node's neighbours, residual MLP update.

    ``update``'s first linear map reads [h, mean, x]; its x block is the same every round, so
    ``input_term`` computes it once and ``forward`` adds it (the same sum, a third fewer products).
    Its width is ``cfg.hidden``; ``cfg.dropout`` applies inside the update.
    """

    def __init__(self, cfg: SpreadModel):
        super().__init__()
        hidden = cfg.hidden
        self.message = nn.Linear(hidden, hidden)
        self.update = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(hidden, hidden)
        )
        self.norm = nn.LayerNorm(hidden)

    def input_term(self, x: torch.Tensor) -> torch.Tensor:
        """(N, hidden) the x block of the update's first layer, plus its bias."""
        first = self.update[0]
        return torch.addmm(first.bias, x, first.weight[:, 2 * x.shape[1] :].t())

    def forward(self, h: torch.Tensor, x_term: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        hidden = h.shape[1]
        weight = self.update[0].weight
        mean = adjacency @ self.message(h)
        z = x_term + h @ weight[:, :hidden].t() + mean @ weight[:, hidden : 2 * hidden].t()
        return self.norm(h + self.update[3](self.update[2](self.update[1](z))))


class SpreadGNN(nn.Module):
    """GraphBatch -> (N,) logits of each node being reached (heat: of its heat value).

    Built from ``cfg`` (``model.spread``): ``hidden``, ``iterations``, ``prior``, ``cycle_features``, ``residual``,
    ``cap_at_prior`` and ``dropout``. With ``residual``, the readout is a correction added to the logit of the DMP
    prior (stochastic processes), so a node the prior puts out of reach stays near 0 unless the network has a reason
    to lift it: on large graphs the expected size is a sum over thousands of such nodes. With ``cap_at_prior``, the
    IC and SIR logits are capped at the prior's (clipped to [PRIOR_FLOOR, 1 - PRIOR_FLOOR]): DMP is an upper bound
    on those reach probabilities on any graph (Karrer & Newman, 2010), so the network can only lower it.
    """

    def __init__(self, cfg: SpreadModel):
        super().__init__()
        hidden = cfg.hidden
        self.iterations, self.prior, self.cycles = cfg.iterations, cfg.prior, cfg.cycle_features
        self.residual, self.cap = cfg.residual, cfg.cap_at_prior
        inputs = N_FEATURES + (2 if cfg.cycle_features else 0)
        self.encode = nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.lift = nn.Linear(inputs, hidden)  # the raw input, offered to every round
        self.layer = MessageLayer(cfg)
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, batch: GraphBatch, iterations: int | None = None) -> torch.Tensor:
        features = node_features(batch, self.prior, self.cycles)
        adjacency = mean_adjacency(batch)
        h = self.encode(features)
        x_term = self.layer.input_term(self.lift(features))
        for _ in range(iterations or self.iterations):
            h = self.layer(h, x_term, adjacency)
        logits = self.readout(h).squeeze(1)
        if self.residual or self.cap:
            prior_logit = torch.logit(features[:, N_FEATURES - 1].clamp(PRIOR_FLOOR, 1 - PRIOR_FLOOR))
        if self.residual:  # a correction to the prior's logit (heat has no prior to correct: plain logits)
            logits = torch.where(batch.process == HEAT, logits, prior_logit + logits)
        if self.cap:  # IC and SIR: DMP bounds the reach probability from above (not SIS: reinfection; not heat)
            capped = torch.isin(batch.process, torch.tensor(CAPPED, dtype=batch.process.dtype))
            logits = torch.where(capped, torch.minimum(logits, prior_logit), logits)
        reached = (batch.seed > 0) & (batch.process != HEAT)
        return torch.where(reached, torch.full_like(logits, 30.0), logits)

    @torch.no_grad()
    def probabilities(self, batch: GraphBatch, iterations: int | None = None) -> torch.Tensor:
        """(N,) float32 in [0, 1]."""
        return torch.sigmoid(self(batch, iterations))
