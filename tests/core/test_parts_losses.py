"""The SCOPS losses, warps and feature loaders on toy inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_unsupseg.core.base.errors import InputError  # noqa: E402
from napari_unsupseg.core.parts import losses as L  # noqa: E402
from napari_unsupseg.core.parts import nets, warps  # noqa: E402
from napari_unsupseg.core.parts.features import (  # noqa: E402
    axis_orientation,
    texture_codes,
    texture_features,
)


def delta(height: int, width: int, points: list[tuple[int, int]]) -> torch.Tensor:
    """``(1, len(points), H, W)``: one unit impulse per channel."""
    out = torch.zeros(1, len(points), height, width)
    for k, (r, c) in enumerate(points):
        out[0, k, r, c] = 1.0
    return out


def test_pixel_coordinates_are_pixel_centres():
    coords = L.pixel_coordinates(4, 2)
    assert coords.shape == (2, 4, 2)
    assert torch.allclose(coords[0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(coords[1, 0], torch.tensor([-0.5, 0.5]))
    centres = torch.tensor([[-0.75, -0.5], [0.75, 0.5]])
    assert torch.allclose(L.to_pixels(centres, 4, 2), torch.tensor([[0.0, 0.0], [3.0, 1.0]]))


def test_centres_of_impulses_and_of_a_symmetric_pair():
    parts = delta(8, 10, [(2, 7), (5, 1)])
    centres, mass = L.part_centres(parts)
    assert torch.allclose(L.to_pixels(centres, 8, 10), torch.tensor([[[2.0, 7.0], [5.0, 1.0]]]),
                          atol=1e-5)
    assert torch.allclose(mass, torch.ones(1, 2))
    pair = delta(8, 10, [(2, 2)]) + delta(8, 10, [(6, 8)])
    centre = L.to_pixels(L.part_centres(pair)[0], 8, 10)
    assert torch.allclose(centre, torch.tensor([[[4.0, 5.0]]]), atol=1e-5)


def test_centres_respect_a_mask():
    pair = delta(8, 8, [(1, 1)]) + delta(8, 8, [(6, 6)])
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    centre = L.to_pixels(L.part_centres(pair, mask)[0], 8, 8)
    assert torch.allclose(centre, torch.tensor([[[1.0, 1.0]]]), atol=1e-5)


def test_concentration_of_an_impulse_is_zero():
    assert L.concentration_loss(delta(9, 9, [(4, 4), (0, 8)])).item() == pytest.approx(0, abs=1e-6)


def test_concentration_of_a_uniform_map_is_the_grid_variance():
    n = 16
    ticks = (np.arange(n) * 2 + 1) / n - 1
    expected = 2 * float(np.mean(ticks**2))  # variance along y plus along x
    value = L.concentration_loss(torch.full((2, 3, n, n), 0.25)).item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(2 / 3 - 2 / (3 * n * n), rel=1e-9)


def test_concentration_of_two_impulses_is_half_their_squared_distance_over_two():
    # Two equal impulses at normalised distance d: variance = (d / 2)^2.
    parts = delta(4, 4, [(0, 0)]) + delta(4, 4, [(0, 2)])
    d = 2 * 2 / 4  # two pixels in normalised units
    assert L.concentration_loss(parts).item() == pytest.approx((d / 2) ** 2, rel=1e-5)


def test_kl_is_zero_for_equal_maps_and_known_for_two_classes():
    p = torch.softmax(torch.randn(2, 3, 5, 5), 1)
    assert L.equivariance_kl(p, p).item() == pytest.approx(0.0, abs=1e-6)
    a = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    b = torch.tensor([0.9, 0.1]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert L.equivariance_kl(a, b).item() == pytest.approx(expected, rel=1e-5)
    valid = torch.zeros(1, 1, 3, 3)
    valid[..., 0, 0] = 1
    c = b.clone()
    c[..., 1:, :] = a[..., 1:, :]  # equal where invalid: the masked KL ignores it
    assert L.equivariance_kl(a, c, valid).item() == pytest.approx(expected, rel=1e-5)


def test_centre_loss_is_mean_squared_distance():
    a = torch.zeros(2, 3, 2)
    b = torch.zeros(2, 3, 2)
    b[0, 0] = torch.tensor([3.0, 4.0])
    assert L.centre_loss(a, b).item() == pytest.approx(25 / 6)


def test_semantic_loss_is_zero_for_an_exact_reconstruction():
    parts = torch.softmax(torch.randn(2, 4, 6, 6), 1)
    bases = torch.rand(4, 7)
    features = torch.einsum("bkhw,kd->bdhw", parts, bases)
    assert L.semantic_loss(parts, features, bases).item() == pytest.approx(0.0, abs=1e-10)
    # A constant offset of 1 in every one of D channels costs D per pixel.
    assert L.semantic_loss(parts, features + 1, bases).item() == pytest.approx(7.0, rel=1e-5)
    # Negative bases are cut by the ReLU: all-negative bases reconstruct zero.
    assert L.semantic_loss(parts, features, -bases).item() == pytest.approx(
        features.pow(2).sum(1).mean().item(), rel=1e-5)


def test_semantic_loss_masks_the_features():
    parts = torch.zeros(1, 2, 2, 2)
    parts[:, 0] = 1  # all background
    bases = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    features = torch.ones(1, 2, 2, 2)
    mask = torch.zeros(1, 1, 2, 2)
    assert L.semantic_loss(parts, features, bases, mask).item() == pytest.approx(0.0)
    assert L.semantic_loss(parts, features, bases).item() == pytest.approx(2.0)


def test_orthonormal_loss_known_values():
    assert L.orthonormal_loss(torch.eye(3) * 5).item() == pytest.approx(0.0, abs=1e-6)
    same = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert L.orthonormal_loss(same).item() == pytest.approx(2.0, rel=1e-5)
    at_45 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert L.orthonormal_loss(at_45).item() == pytest.approx(2 * 0.5, rel=1e-5)


def test_saliency_loss_prefers_the_right_background():
    fg = torch.zeros(1, 1, 2, 2)
    fg[..., 0, :] = 1
    right = torch.zeros(1, 3, 2, 2)
    right[:, 1, 0] = 0.99
    right[:, 0, 0] = 0.01
    right[:, 0, 1] = 0.99
    right[:, 2, 1] = 0.01
    wrong = right.flip(2)
    assert L.saliency_loss(right, fg) < 0.02 < L.saliency_loss(wrong, fg)


def two_colour_image() -> torch.Tensor:
    """``(1, 3, 4, 6)``: red on the left three columns, blue on the right three."""
    image = torch.zeros(1, 3, 4, 6)
    image[:, 0, :, :3] = 1
    image[:, 2, :, 3:] = 1
    return image


def hard_parts(columns: list[int], k: int = 3) -> torch.Tensor:
    """``(1, k, 4, len(columns))``: every column of pixels wholly in one part."""
    index = torch.tensor(columns)[None, None, :].expand(1, 4, len(columns))
    return torch.nn.functional.one_hot(index, k).permute(0, 3, 1, 2).float()


def test_colour_affinity_prefers_boundaries_on_colour_edges():
    image = two_colour_image()
    on_edge = hard_parts([1, 1, 1, 2, 2, 2])
    off_edge = hard_parts([1, 1, 2, 2, 2, 2])
    # Pairs across the colour edge still weigh a little (the weight adapts to the
    # image's contrast), so a boundary on the edge costs a little, one beside it a lot.
    on, off = L.colour_affinity_loss(on_edge, image).item(), L.colour_affinity_loss(
        off_edge, image).item()
    assert off > 4 * on
    # One part everywhere also costs nothing: the term only places boundaries.
    assert L.colour_affinity_loss(hard_parts([1] * 6), image).item() == pytest.approx(0.0, abs=1e-6)


def test_region_consistency_is_zero_on_constant_regions_and_known_otherwise():
    regions = (torch.arange(6) >= 3).long()[None, None].expand(1, 4, 6)
    assert L.region_consistency_loss(hard_parts([1, 1, 1, 2, 2, 2]), regions).item() == (
        pytest.approx(0.0, abs=1e-6))
    # Soft parts: column 0 says (0.9, 0.1), the rest (0.5, 0.5). Region 0 (columns
    # 0-2) has the mean (1.9 / 3, 1.1 / 3) and every pixel of it differs from that
    # mean; region 1 is constant and costs nothing.
    soft = torch.full((1, 2, 4, 6), 0.5)
    soft[0, 0, :, 0], soft[0, 1, :, 0] = 0.9, 0.1
    mean = torch.tensor([(0.9 + 1.0) / 3, (0.1 + 1.0) / 3])

    def kl(p):
        return float((mean * (mean.log() - torch.tensor(p).log())).sum())

    expected = (kl([0.9, 0.1]) + 2 * kl([0.5, 0.5])) / 6
    assert L.region_consistency_loss(soft, regions).item() == pytest.approx(expected, rel=1e-4)


def test_losses_have_gradients():
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    probs = torch.softmax(logits, 1)
    bases = torch.rand(4, 5, requires_grad=True)
    total = (L.concentration_loss(probs[:, 1:]) + L.equivariance_kl(probs, probs.flip(3))
             + L.semantic_loss(probs, torch.rand(2, 5, 8, 8), bases)
             + L.orthonormal_loss(bases[1:])
             + L.colour_affinity_loss(probs, torch.rand(2, 3, 8, 8)))
    total.backward()
    assert logits.grad.abs().sum() > 0 and bases.grad.abs().sum() > 0


# --- warps -----------------------------------------------------------------------------


def test_identity_grid_copies():
    x = torch.rand(2, 3, 7, 9)
    out, valid = warps.warp(x, warps.identity_grid(2, 7, 9))
    assert torch.allclose(out, x, atol=1e-5)
    assert valid.min() == 1


def test_tps_with_unmoved_points_is_the_identity():
    source = np.stack(np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 4)), -1).reshape(-1, 2)
    coeffs = warps.tps_coefficients(source, source)
    points = torch.rand(1, 50, 2) * 2 - 1
    out = warps.tps_apply(points, torch.as_tensor(source).float()[None],
                          torch.as_tensor(coeffs).float()[None])
    assert torch.allclose(out, points, atol=1e-5)


def test_tps_interpolates_its_control_points():
    rng = np.random.default_rng(1)
    source = rng.uniform(-1, 1, (9, 2))
    target = source + rng.normal(0, 0.1, source.shape)
    coeffs = warps.tps_coefficients(source, target)
    out = warps.tps_apply(torch.as_tensor(source)[None], torch.as_tensor(source)[None],
                          torch.as_tensor(coeffs)[None])
    assert np.allclose(out[0].numpy(), target, atol=1e-8)


def test_zero_strength_tps_grid_is_the_affine_grid():
    a = warps.random_grid(np.random.default_rng(3), 2, 12, 10, kind="tps", tps_strength=0.0)
    b = warps.random_grid(np.random.default_rng(3), 2, 12, 10, kind="affine")
    # Same draws apart from the TPS offsets (which come first and are all zero here).
    rng = np.random.default_rng(3)
    for _ in range(2):
        rng.normal(0, 0.0, (16, 2))
    c = torch.as_tensor(warps.affine_matrices(rng, 2)).float()
    expected = torch.einsum("bij,bhwj->bhwi", c[:, :, :2], warps.identity_grid(2, 12, 10))
    expected = expected + c[:, None, None, :, 2]
    assert torch.allclose(a, expected, atol=1e-4)
    assert b.shape == a.shape


def test_an_impulse_moves_where_the_affine_map_sends_it():
    # Output pixel q reads input position A q + t: an impulse at input p shows up at
    # A^-1 (p - t). Check the centre of the warped impulse against that.
    h = w = 33
    mats = warps.affine_matrices(np.random.default_rng(0), 1, max_rotation=40, scale=(1.2, 1.2),
                                 max_shift=0.1)
    grid = torch.einsum("bij,bhwj->bhwi", torch.as_tensor(mats[:, :, :2]).float(),
                        warps.identity_grid(1, h, w))
    grid = grid + torch.as_tensor(mats[:, None, None, :, 2]).float()
    blob = torch.zeros(1, 1, h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    blob[0, 0] = torch.exp(-((yy - 12.0) ** 2 + (xx - 18.0) ** 2) / (2 * 1.5**2))
    moved, _ = warps.warp(blob, grid)
    centre = L.part_centres(moved)[0][0, 0]  # normalised (y, x)
    p = L.part_centres(blob)[0][0, 0].flip(0).numpy()  # (x, y)
    expected_xy = np.linalg.solve(mats[0, :, :2], p - mats[0, :, 2])
    assert np.allclose(centre.flip(0).numpy(), expected_xy, atol=0.02)


def test_warp_marks_outside_as_invalid():
    grid = warps.identity_grid(1, 8, 8) * 2  # zoom out: the border reads outside
    _, valid = warps.warp(torch.ones(1, 1, 8, 8), grid)
    assert valid[0, 0, 4, 4] == 1 and valid[0, 0, 0, 0] == 0


def test_colour_jitter_stays_in_range_and_keeps_grey_grey():
    rng = np.random.default_rng(0)
    x = torch.rand(4, 3, 8, 8)
    out = warps.colour_jitter(x, rng)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    grey = torch.rand(2, 1, 8, 8).expand(2, 3, 8, 8)
    out = warps.colour_jitter(grey, rng, hue=0.5)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5)
    single = warps.colour_jitter(torch.rand(2, 1, 8, 8), rng)
    assert single.shape == (2, 1, 8, 8)


# --- features and weights -------------------------------------------------------------


def test_texture_features_ignore_colour_and_see_texture():
    yy, xx = np.mgrid[:32, :32]
    stripes = (np.sin(xx * 2 * np.pi / 5) > 0).astype(float)
    red = np.stack([0.3 + 0.5 * stripes, 0.1 + 0 * stripes, 0.1 + 0 * stripes], -1)
    blue = red[..., ::-1]
    fr, fb = texture_features(red), texture_features(blue)
    assert np.allclose(fr, fb, atol=1e-6)
    flat = texture_features(np.full((32, 32, 3), 0.5))
    assert fr[:, 16, 16].sum() > 10 * flat[:, 16, 16].sum() + 1e-3


def test_texture_codes_are_non_negative_and_separate_textures():
    yy, xx = np.mgrid[:32, :64]
    image = np.where(xx < 32, (np.sin(xx * 2 * np.pi / 4) > 0) * 0.6 + 0.2, 0.5)[..., None]
    energies = texture_features(image)[None]
    codes = texture_codes(energies, None)
    assert codes.shape == (1, 2 * energies.shape[1], 32, 64) and codes.min() >= 0
    left, right = codes[0, :, 16, 8], codes[0, :, 16, 56]
    # Opposite signs of the standardised energies land on different axes: the two
    # textures' codes are far from parallel (measured: cosine 0.28).
    assert float(left @ right) / float(np.linalg.norm(left) * np.linalg.norm(right)) < 0.5
    turn = np.ones((1, 1, 32, 64), np.float32)
    assert texture_codes(energies, None, turn).shape[1] == codes.shape[1] + 2


def test_axis_orientation_tells_stripes_across_from_along_whatever_the_turn():
    size = 96
    yy, xx = np.mgrid[:size, :size].astype(float) - size / 2
    for angle in (0.0, 0.7, 2.0):
        u = xx * np.cos(angle) + yy * np.sin(angle)  # along the object
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        inside = ((u / 40) ** 2 + (v / 15) ** 2 <= 1).astype(float)
        across = np.sin(u * 2 * np.pi / 8) > 0  # stripes across the long axis
        along = np.sin(v * 2 * np.pi / 8) > 0
        centre = (np.abs(u) < 15) & (np.abs(v) < 6)
        for stripes, sign in ((across, 1), (along, -1)):
            image = (0.3 + 0.5 * stripes * inside)[..., None]
            value = axis_orientation(image, inside)[centre].mean()
            assert sign * value > 0.5, (angle, sign, value)


def _vgg19_state() -> dict:
    module = nets.VGG19Features(last=len(nets.VGG19_LAYOUT) + 16 - 1)  # the full stack
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(3, 3)  # ignored
    return state


def test_vgg19_names_follow_torchvision():
    state = nets.VGG19Features().state_dict()
    convs = sorted({int(k.split(".")[1]) for k in state})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30]
    assert state["features.30.weight"].shape == (512, 512, 3, 3)
    out = nets.VGG19Features()(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 512, 4, 4) and out.min() >= 0  # relu5_2: stride 16


def test_load_vgg19_state_dict_file(tmp_path):
    path = tmp_path / "vgg19.pth"
    state = _vgg19_state()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    module, name = nets.load_feature_extractor(path)
    assert "VGG-19" in name and not any(p.requires_grad for p in module.parameters())
    assert torch.equal(module.state_dict()["features.28.weight"], state["features.28.weight"])


def test_mismatched_vgg_keys_are_a_plain_error(tmp_path):
    state = _vgg19_state()
    del state["features.30.weight"]
    state["features.28.weight"] = torch.zeros(512, 256, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(InputError, match="missing 1 key.*features.30.weight.*wrong shape"):
        nets.load_feature_extractor(path)


def test_unknown_and_unreadable_weight_files(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="neither a torchvision VGG-19"):
        nets.load_feature_extractor(other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="could not be read"):
        nets.load_feature_extractor(junk)
    with pytest.raises(InputError, match="does not exist"):
        nets.load_feature_extractor(tmp_path / "absent.pth")


@pytest.mark.parametrize("blocks,bottleneck,arch", [((2, 2, 2), False, "ResNet-18"),
                                                    ((3, 4, 6), True, "ResNet-50")])
def test_load_resnet_state_dict_file(tmp_path, blocks, bottleneck, arch):
    module = nets.ResNetFeatures(blocks, bottleneck)
    state = dict(module.state_dict())
    # A full torchvision file also has layer4 and fc: they are ignored.
    for j in range(2 if blocks == (2, 2, 2) else 3):
        state[f"layer4.{j}.conv1.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(10, 512)
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    loaded, name = nets.load_feature_extractor(path)
    assert name.startswith(arch)
    out = loaded(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 256 * (4 if bottleneck else 1), 4, 4)


def test_network_features_input_is_bounded_whatever_the_working_size():
    from napari_unsupseg.core.parts.features import NETWORK_INPUT_RANGE, network_features

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return x[:, :1, ::16, ::16]

    for side, expected in ((32, 224), (64, 256), (1024, NETWORK_INPUT_RANGE[1])):
        seen.clear()
        *_, (done, out) = network_features(Probe(), torch.rand(1, 3, side, side))
        # 4x the working size, but never more than the top of the range (was 4096 at 1024).
        assert seen == [(expected, expected)] and done == 1
        assert out.shape[-1] == expected // 16
