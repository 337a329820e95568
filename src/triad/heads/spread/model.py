"""The spread network: message passing over a ``GraphBatch`` -> each node's probability of being reached.

Per node the input is: seed indicator, log(1 + degree), 1 / (1 + degree), the process (one-hot) and
its parameters, and optionally a *prior*: the dynamic-message-passing (DMP) estimate of the reach
probability for the process's transmissibility, which is exact on trees and ignores the correlations
that loops create. A linear encoder lifts the input to ``hidden`` channels; then ONE message-passing
layer is applied ``iterations`` times (shared weights, so more rounds can run on larger graphs; x_v is the lifted input):

    h_v <- LayerNorm(h_v + MLP([h_v, mean_{u~v} W h_u, x_v]))

and a small MLP reads each node's logit. Sums and means over neighbours are symmetric functions,
so relabelling the nodes relabels the output the same way (permutation equivariance). For the
stochastic processes a seed is reached by definition: its output is 1.
"""

from __future__ import annotations

import torch
from torch import nn

from triad.heads.spread.batch import GraphBatch
from triad.heads.spread.simulate import PROCESSES

HEAT = PROCESSES.index("heat")
N_FEATURES = 3 + len(PROCESSES) + 4 + 1
PRIOR_ROUNDS = 100  # at most; DMP stops earlier once no message moves by 1e-6


def transmissibility(process: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """(N,) probability that an infected node ever infects a given neighbour (0 for heat).

    IC: ``p``. SIR/SIS: with infectious time D ~ Geometric(gamma) steps,
    ``1 - E[(1 - beta)**D] = 1 - gamma (1 - beta) / (1 - (1 - gamma)(1 - beta))`` (SIS ignores reinfection).
    """
    p, beta, gamma = params[:, 0], params[:, 1], params[:, 2]
    escape = gamma * (1 - beta) / (1 - (1 - gamma) * (1 - beta)).clamp_min(1e-6)
    t = torch.where(process == PROCESSES.index("ic"), p, 1 - escape)
    return torch.where(process == HEAT, torch.zeros_like(t), t).clamp(0, 1)


def dmp_prior(batch: GraphBatch, rounds: int = PRIOR_ROUNDS) -> torch.Tensor:
    """(N,) dynamic message passing for a cascade with per-edge transmissibility T (no gradient flows).

    m[u->v] is the probability that u is reached without v's help; on a tree the fixed point is exact:
    m[u->v] = 1 - (1 - s_u) prod_{w~u, w != v} (1 - T m[w->u]),  P_v = 1 - (1 - s_v) prod_{u~v} (1 - T m[u->v]).
    """
    src, dst, rev, seed = batch.src, batch.dst, batch.rev, batch.seed
    t_edge = transmissibility(batch.process, batch.params)[src]
    message = seed[src]
    log_in = torch.zeros_like(seed)
    for _ in range(rounds):
        log_q = torch.log1p(-(t_edge * message).clamp(max=1 - 1e-6))
        log_in = torch.zeros_like(seed).index_add(0, dst, log_q)
        updated = 1 - (1 - seed[src]) * torch.exp(log_in[src] - log_q[rev])
        converged = len(updated) == 0 or float((updated - message).abs().max()) < 1e-6
        message = updated
        if converged:
            break
    log_q = torch.log1p(-(t_edge * message).clamp(max=1 - 1e-6))
    log_in = torch.zeros_like(seed).index_add(0, dst, log_q)
    return 1 - (1 - seed) * torch.exp(log_in)


def node_features(batch: GraphBatch, prior: bool) -> torch.Tensor:
    """(N, N_FEATURES) float32 input features (see the module docstring)."""
    degree = torch.zeros_like(batch.seed).index_add(0, batch.dst, torch.ones_like(batch.dst, dtype=batch.seed.dtype))
    p, beta, gamma, t = batch.params.unbind(1)
    scaled = torch.stack([p, beta, gamma, torch.log1p(t)], 1)
    prior_value = dmp_prior(batch) if prior else torch.zeros_like(batch.seed)
    return torch.cat([
        batch.seed[:, None], torch.log1p(degree)[:, None], (1 / (1 + degree))[:, None],
        nn.functional.one_hot(batch.process, len(PROCESSES)).float(), scaled, prior_value[:, None],
    ], 1)


class MessageLayer(nn.Module):
    """One round: messages W h_u, their mean over each node's neighbours, residual MLP update."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.message = nn.Linear(hidden, hidden)
        self.update = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, x: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                inverse_degree: torch.Tensor) -> torch.Tensor:
        msg = self.message(h)[src]
        mean = torch.zeros_like(h).index_add(0, dst, msg) * inverse_degree[:, None]
        return self.norm(h + self.update(torch.cat([h, mean, x], 1)))


class SpreadGNN(nn.Module):
    """GraphBatch -> (N,) logits of each node being reached (heat: of its heat value)."""

    def __init__(self, hidden: int = 32, iterations: int = 6, prior: bool = True, dropout: float = 0.0):
        super().__init__()
        self.iterations, self.prior = iterations, prior
        self.encode = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.lift = nn.Linear(N_FEATURES, hidden)  # the raw input, offered to every round
        self.layer = MessageLayer(hidden, dropout)
        self.readout = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, batch: GraphBatch, iterations: int | None = None) -> torch.Tensor:
        features = node_features(batch, self.prior)
        degree = torch.zeros_like(batch.seed).index_add(0, batch.dst, torch.ones_like(batch.seed[batch.dst]))
        inverse_degree = 1 / degree.clamp_min(1)
        h, x = self.encode(features), self.lift(features)
        for _ in range(iterations or self.iterations):
            h = self.layer(h, x, batch.src, batch.dst, inverse_degree)
        logits = self.readout(h).squeeze(1)
        reached = (batch.seed > 0) & (batch.process != HEAT)
        return torch.where(reached, torch.full_like(logits, 30.0), logits)

    @torch.no_grad()
    def probabilities(self, batch: GraphBatch, iterations: int | None = None) -> torch.Tensor:
        """(N,) float32 in [0, 1]."""
        return torch.sigmoid(self(batch, iterations))
