import torch
from torch import nn

from goodfit.regularization import l1_penalty, param_groups, weight_parameters, weight_stats


def model():
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.0, 0.5], [0.0005, 0.0]]))
        m[0].bias.fill_(10.0)
        m[2].weight.copy_(torch.tensor([[1.0, 1.0, -1.0]]))
        m[2].bias.fill_(-7.0)
    return m


def test_l1_counts_weights_not_biases():
    assert abs(l1_penalty(model()).item() - (1 + 2 + 0.5 + 0.0005 + 3)) < 1e-5


def test_weight_decay_only_on_weights():
    m = model()
    groups = param_groups(m, 0.01)
    assert groups[0]["weight_decay"] == 0.01 and len(groups[0]["params"]) == 2
    assert groups[1]["weight_decay"] == 0.0 and len(groups[1]["params"]) == 2
    assert len(weight_parameters(m)) == 2


def test_weight_stats():
    s = weight_stats(model())
    assert abs(s["weight_l1"] - 6.5005) < 1e-5
    assert abs(s["weight_l2"] - (1 + 4 + 0.25 + 0.0005**2 + 3) ** 0.5) < 1e-5
    assert abs(s["sparsity"] - 3 / 9) < 1e-6  # 0, 0.0005, 0 are below 1e-3


def test_l1_penalty_drives_weights_to_zero():
    torch.manual_seed(0)
    x = torch.randn(30, 10)
    y = x[:, 0] * 2.0 + torch.randn(30)  # only the first feature matters; noise tempts the others
    sparsities = {}
    for lam in (0.0, 0.2):
        lin = nn.Linear(10, 1)
        opt = torch.optim.SGD(lin.parameters(), lr=0.05)
        for _ in range(300):
            loss = ((lin(x).squeeze(1) - y) ** 2).mean() + lam * l1_penalty(lin)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sparsities[lam] = (lin.weight.abs() < 0.025).float().mean().item()
    assert sparsities[0.2] >= sparsities[0.0] + 0.3


def test_an_optimizer_from_param_groups_decays_every_weight_and_no_bias():
    """Built from param_groups, an optimizer shrinks each weight by its decay when the loss is flat and
    leaves each bias where it was; with a real loss it moves every parameter (none is left out)."""
    m = model()
    before = {name: p.detach().clone() for name, p in m.named_parameters()}
    opt = torch.optim.SGD(param_groups(m, 0.1), lr=1.0)
    for p in m.parameters():
        p.grad = torch.zeros_like(p)  # a flat loss: only weight decay moves anything
    opt.step()
    for name, p in m.named_parameters():
        expected = before[name] * 0.9 if name.endswith("weight") else before[name]
        assert torch.allclose(p.detach(), expected), name
    opt = torch.optim.SGD(param_groups(m, 0.0), lr=0.1)
    m(torch.tensor([[1.0, 1.0]])).sum().backward()  # every gradient is non-zero here (all units active)
    before = {name: p.detach().clone() for name, p in m.named_parameters()}
    opt.step()
    for name, p in m.named_parameters():
        assert not torch.equal(p.detach(), before[name]), name
