import pytest
import torch

from goodfit.errors import GoodfitError
from goodfit.models import CNN1D, MLP, SmallCNN, build_model, model_spec


def spec(**kw):
    base = dict(kind="auto", modality="image", input_shape=[1, 8, 8], n_classes=10, hidden=[16], channels=[4, 8],
                dropout=0.5, batch_norm=False, mean=[0.3], std=[0.2])
    base.update(kw)
    return model_spec(**base)


@pytest.mark.parametrize("modality, shape, cls", [("image", [1, 8, 8], SmallCNN), ("tabular", [30], MLP),
                                                  ("timeseries", [1, 96], CNN1D)])
def test_auto_picks_model_by_modality(modality, shape, cls):
    s = spec(modality=modality, input_shape=shape, mean=[0.0] * shape[0], std=[1.0] * shape[0])
    model = build_model(s, seed=0)
    assert isinstance(model, cls)
    assert model(torch.zeros(3, *shape)).shape == (3, 10)


def test_dropout_active_in_train_mode_only():
    model = build_model(spec(dropout=0.5), seed=0)
    x = torch.rand(4, 1, 8, 8)
    model.train()
    assert not torch.equal(model(x), model(x))  # random masks
    model.eval()
    assert torch.equal(model(x), model(x))  # dropout off at inference


def test_seeded_initialisation_is_reproducible_and_isolated():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = build_model(spec(), seed=5), build_model(spec(), seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched


def test_standardize_uses_train_statistics():
    model = build_model(spec(mean=[0.5], std=[0.25]), seed=0)
    layer = model.features[0]
    assert torch.allclose(layer(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))


def test_wrong_model_for_data_shape():
    with pytest.raises(GoodfitError, match="train.model 'mlp' expects inputs with 1 dimension"):
        spec(kind="mlp")


def test_bad_dropout():
    with pytest.raises(GoodfitError, match=r"The 'dropout' parameter must be a float in \[0, 1\), got 1\.5"):
        MLP(in_features=3, n_classes=2, dropout=1.5)


@pytest.mark.parametrize("modality, shape", [("image", [1, 12, 10]), ("timeseries", [2, 50])])
def test_kernel_size_and_flattened_head(modality, shape):
    s = spec(modality=modality, input_shape=shape, mean=[0.0] * shape[0], std=[1.0] * shape[0], kernel_size=7,
             global_pool=False, channels=[4, 8])
    model = build_model(s, seed=0)
    assert model(torch.zeros(3, *shape)).shape == (3, 10)
    conv = model.features[1]
    assert conv.kernel_size == ((7, 7) if modality == "image" else (7,))
    # Without global pooling the head sees every position of the last map: 8 channels x the pooled size.
    positions = (12 // 4) * (10 // 4) if modality == "image" else 50 // 4
    assert model.head[1].in_features == 8 * positions
    pooled = build_model({**s, "global_pool": True}, seed=0)
    assert pooled.head[1].in_features == 8


def test_even_kernel_is_refused():
    with pytest.raises(GoodfitError, match=r"The 'kernel_size' parameter must be an odd int >= 1, got 4"):
        CNN1D(in_channels=1, length=20, n_classes=2, kernel_size=4)



@pytest.mark.parametrize("batch_norm", [False, True])
def test_pooling_before_relu_is_the_same_function_and_gradient(batch_norm):
    model = SmallCNN(in_channels=1, image_hw=(28, 28), n_classes=3, channels=[4, 8], batch_norm=batch_norm).eval()
    layers = list(model.features)
    pools = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 2 and all(isinstance(layers[i + 1], torch.nn.ReLU) for i in pools)
    textbook = list(layers)  # conv -> [bn] -> ReLU -> max-pool, with the same layer objects
    for i in pools:
        textbook[i], textbook[i + 1] = textbook[i + 1], textbook[i]
    x = torch.randn(6, 1, 28, 28)
    ours = model.head(model.features(x))
    theirs = model.head(torch.nn.Sequential(*textbook)(x))
    grad_ours = torch.autograd.grad(ours.square().sum(), model.features[1].weight)[0]
    grad_theirs = torch.autograd.grad(theirs.square().sum(), model.features[1].weight)[0]
    assert torch.equal(ours, theirs) and torch.equal(grad_ours, grad_theirs)


def test_goodfit_dropout_keeps_1_minus_p_and_scales_like_nn_dropout():
    from goodfit.models import Dropout

    layer, p, n = Dropout(0.3), 0.3, 200_000
    torch.manual_seed(0)
    out = layer(torch.ones(n))
    kept = out != 0
    # binomial(n, 0.7): sd = sqrt(n p (1 - p)) ~ 205; 5 sd either side
    assert abs(int(kept.sum()) - n * (1 - p)) < 5 * (n * p * (1 - p)) ** 0.5
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    x = torch.randn(64, 8, requires_grad=True)
    torch.manual_seed(1)
    y = layer(x)
    y.sum().backward()
    mask = (y != 0).float() / (1 - p)
    assert torch.allclose(x.grad, mask)  # gradient flows through kept units only, scaled
    layer.eval()
    assert layer(x) is x  # identity at inference, as nn.Dropout
    layer.train()
    bf = layer(torch.ones(1000, dtype=torch.bfloat16))
    assert bf.dtype == torch.bfloat16 and set(bf.unique().tolist()) <= {0.0, float(torch.tensor(1 / 0.7,
                                                                                           dtype=torch.bfloat16))}


def test_models_use_goodfit_dropout_and_keep_their_state_dict_keys():
    from goodfit.models import Dropout

    model = build_model(spec(dropout=0.2), seed=0)
    assert any(isinstance(m, Dropout) for m in model.modules())
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert set(model.state_dict()) == {"features.0.mean", "features.0.std", "features.1.weight", "features.1.bias",
                                       "features.4.weight", "features.4.bias", "head.1.weight", "head.1.bias",
                                       "head.4.weight", "head.4.bias"}


@pytest.mark.parametrize("kind, shape", [("cnn", [1, 8, 8]), ("mlp", [5])])
def test_standardizing_outside_the_model_gives_the_same_outputs(kind, shape):
    model = build_model(spec(kind=kind, input_shape=shape, mean=[0.3] * shape[0], std=[2.0] * shape[0]),
                        seed=0).eval()
    x = torch.randn(6, *shape)
    expected = model(x)
    with model.input_standardize.applied_outside() as standardize:
        assert torch.equal(model(standardize(x)), expected)
        assert not torch.equal(model(x), expected)  # the layer passes raw inputs through meanwhile
    assert torch.equal(model(x), expected)
    with pytest.raises(RuntimeError), model.input_standardize.applied_outside():
        raise RuntimeError("interrupted")
    assert not model.input_standardize.passthrough and torch.equal(model(x), expected)
