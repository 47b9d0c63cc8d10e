"""Exact NN search: parity with a brute-force FP64 search, ties, duplicates, precision guard."""

import numpy as np
import pytest
import torch

from networks.bits import token_hamming
from networks.precision import strict_fp32
from nn_search import deduplicate_rows, exact_l2_top2, first_occurrence, hamming_top2, search_sq_norms, signed_codes, token_codes

SHAPES = [(37, 101, 13), (300, 700, 64), (5, 3, 7), (20, 2, 3)]


def brute_force_top2(queries, reference):
    """(Q, 2) distances and indices from full FP64 distances, ties to the lower index."""
    sq = (queries.double()[:, None] - reference.double()[None]).square().sum(-1)  # (Q, N)
    values, indices = sq.sort(dim=1, stable=True)
    return values[:, :2].sqrt(), indices[:, :2]


def random_rows(num, dims, dtype, generator):
    if dtype == torch.uint8:
        return torch.randint(0, 256, (num, dims), dtype=torch.uint8, generator=generator)
    return torch.rand(num, dims, generator=generator).to(dtype)


def with_copies_and_duplicates(queries, reference):
    """Queries 0-1 copy reference rows; reference row 2 duplicates row 1 (a tie for query 1)."""
    queries, reference = queries.clone(), reference.clone()
    queries[:2] = reference[:2]
    if reference.shape[0] > 2:
        reference[2] = reference[1]
    return queries, reference


@pytest.fixture(params=["this machine", "int8 GEMM", "FP32 GEMM"])
def gemm_path(request, monkeypatch):
    """Every GEMM flavour on any machine: the int8 one is chosen only where it is fast (VNNI, CUDA)."""
    from nn_search import int8_gemm

    if request.param != "this machine":
        monkeypatch.setattr(int8_gemm, "fast_int8_gemm", lambda device: request.param == "int8 GEMM")
    return request.param


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_exact_l2_top2_matches_fp64_brute_force(dtype, shape, gemm_path):
    generator = torch.Generator().manual_seed(sum(shape))
    num_queries, num_reference, dims = shape
    queries, reference = with_copies_and_duplicates(
        random_rows(num_queries, dims, dtype, generator), random_rows(num_reference, dims, dtype, generator)
    )
    # several query chunks and reference blocks (odd sizes, with top-k merges) are exercised
    top = exact_l2_top2(queries, reference, chunk_size=max(16, num_queries // 4), reference_chunk_size=max(29, num_reference // 5))
    distances, indices = brute_force_top2(queries, reference)
    assert top.d1.dtype == torch.float64 and top.idx1.dtype == torch.long
    assert torch.equal(top.d1, distances[:, 0]) and torch.equal(top.d2, distances[:, 1])
    assert torch.equal(top.idx1, indices[:, 0]) and torch.equal(top.idx2, indices[:, 1])
    assert torch.all(top.d1[:2] == 0)


def test_duplicate_reference_rows_tie_to_the_lower_index():
    reference = torch.tensor([[0, 0], [5, 5], [5, 5], [9, 9]], dtype=torch.uint8)
    top = exact_l2_top2(torch.tensor([[5, 5], [6, 6]], dtype=torch.uint8), reference)
    assert top.idx1.tolist() == [1, 1] and top.idx2.tolist() == [2, 2]
    # distances go through a vectorised sqrt that is not correctly rounded on every CPU: compare with
    # a tolerance (the indices above are exact by construction)
    assert top.d1.tolist() == pytest.approx([0.0, 2**0.5], rel=1e-12) and top.d2.tolist() == pytest.approx([0.0, 2**0.5], rel=1e-12)


def test_mixed_dtypes_and_precomputed_norms_give_the_same_neighbours():
    generator = torch.Generator().manual_seed(0)
    reference = random_rows(200, 48, torch.uint8, generator)
    queries = random_rows(30, 48, torch.uint8, generator)
    exact = exact_l2_top2(queries, reference)
    mixed = exact_l2_top2(queries.float(), reference)
    norms = reference.double().square().sum(1)
    with_norms = exact_l2_top2(queries.float(), reference.float(), reference_sq_norms=norms)
    shifted_norms = search_sq_norms(reference)  # int32, of the rows the int8 GEMM sees
    assert shifted_norms.dtype == torch.int32 and torch.equal(shifted_norms.long(), (reference.long() - 128).square().sum(1))
    with_shifted_norms = exact_l2_top2(queries, reference, reference_sq_norms=shifted_norms, reference_chunk_size=64)
    mismatched_norms = exact_l2_top2(queries.float(), reference, reference_sq_norms=shifted_norms)  # recomputed
    for other in (mixed, with_norms, with_shifted_norms, mismatched_norms):
        assert torch.equal(other.idx1, exact.idx1) and torch.equal(other.d1, exact.d1) and torch.equal(other.d2, exact.d2)


def test_single_reference_row_and_empty_queries():
    reference = torch.tensor([[1.0, 2.0]])
    top = exact_l2_top2(torch.tensor([[1.0, 2.0], [4.0, 6.0]]), reference)
    assert top.d1.tolist() == pytest.approx([0.0, 5.0], rel=1e-12) and top.idx2.tolist() == [-1, -1] and torch.isinf(top.d2).all()
    empty = exact_l2_top2(torch.zeros(0, 2), reference)
    assert empty.d1.shape == (0,) and empty.idx1.dtype == torch.long


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        exact_l2_top2(torch.zeros(3, 4), torch.zeros(5, 3))


def test_strict_fp32_context_overrides_and_restores_reduced_precision():
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # would allow bf16 GEMMs (oneDNN) / TF32 (CUDA)
    try:
        with strict_fp32():
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.get_float32_matmul_precision() == "medium"
        generator = torch.Generator().manual_seed(1)
        queries, reference = random_rows(40, 300, torch.float32, generator), random_rows(500, 300, torch.float32, generator)
        top = exact_l2_top2(queries, reference)
        distances, indices = brute_force_top2(queries, reference)
        assert torch.equal(top.idx1, indices[:, 0]) and torch.equal(top.d2, distances[:, 1])
    finally:
        torch.set_float32_matmul_precision(before)


@pytest.fixture(params=["oneDNN bits x signs", "popcount", "int8 GEMM", "FP32 GEMM"])
def hamming_path(request, monkeypatch):
    """Every Hamming path on any machine, whichever `hamming_path` would pick here."""
    from nn_search import hamming, int8_gemm, popcount

    if request.param == "oneDNN bits x signs":
        if hamming._ONEDNN_QLINEAR is None:
            pytest.skip("this torch build has no oneDNN int8 linear")
    elif request.param == "popcount":
        if not hasattr(np, "bitwise_count"):
            pytest.skip("NumPy < 2 has no bitwise_count")
        monkeypatch.setattr(hamming, "_ONEDNN_QLINEAR", None)
        monkeypatch.setattr(popcount, "DEFAULT_BLOCKS", popcount.PopcountBlocks(query_block=3, reference_tile=64))  # many pieces
    else:
        monkeypatch.setattr(hamming, "_ONEDNN_QLINEAR", None)
        monkeypatch.setattr(hamming, "hamming_path", lambda queries, reference: "GEMM")
        monkeypatch.setattr(int8_gemm, "fast_int8_gemm", lambda device: request.param == "int8 GEMM")
    return request.param


@pytest.mark.parametrize("num_bits", [1, 3, 7])
def test_hamming_top2_matches_packed_popcount(num_bits, hamming_path):
    generator = torch.Generator().manual_seed(num_bits)
    reference = torch.randint(0, 2**num_bits, (300, 5, 3), generator=generator)  # (N, h, w) ids
    queries = torch.randint(0, 2**num_bits, (41, 5, 3), generator=generator)
    queries[:3] = reference[:3]
    reference[7] = reference[1]  # duplicate: query 1 has d1 = d2 = 0
    hamming = token_hamming(queries[:, None], reference[None], num_bits).sum((-2, -1)).double()  # (Q, N)
    expected, _ = hamming.sort(dim=1)
    top = hamming_top2(token_codes(queries, num_bits), token_codes(reference, num_bits), chunk_size=8, reference_chunk_size=64)
    assert torch.equal(top.d1, expected[:, 0]) and torch.equal(top.d2, expected[:, 1])
    assert torch.equal(hamming.gather(1, top.idx1[:, None])[:, 0], top.d1)
    assert torch.equal(hamming.gather(1, top.idx2[:, None])[:, 0], top.d2)
    assert (top.idx1 != top.idx2).all() and top.d1[:3].eq(0).all() and top.d2[1] == 0


def test_hamming_at_the_cifar_latent_size_matches_popcount(hamming_path):
    """7168 bits (32x32x7), odd tile edges, near-copies and an exact duplicate pair."""
    generator = torch.Generator().manual_seed(11)
    reference = torch.randint(0, 2, (150, 7168), generator=generator, dtype=torch.uint8)
    queries = torch.randint(0, 2, (37, 7168), generator=generator, dtype=torch.uint8)
    queries[:5] = reference[:5]
    queries[:5, :3] ^= 1  # near-copies at Hamming distance 3
    reference[9] = reference[4]
    packed_q, packed_r = (torch.from_numpy(np.packbits(x.numpy(), axis=1)) for x in (queries, reference))
    popcount = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.float64)
    hamming = popcount[(packed_q[:, None].long() ^ packed_r[None].long())].sum(-1)  # (Q, N)
    expected, _ = hamming.sort(dim=1)
    top = hamming_top2(queries.to(torch.int8) * 2 - 1, reference.to(torch.int8) * 2 - 1, chunk_size=16, reference_chunk_size=100)
    assert torch.equal(top.d1, expected[:, 0]) and torch.equal(top.d2, expected[:, 1])
    assert torch.equal(hamming.gather(1, top.idx1[:, None])[:, 0], top.d1)
    assert top.d1[:5].eq(3).all() and top.d2[4] == 3


def test_hamming_accepts_soft_signs():
    generator = torch.Generator().manual_seed(3)
    soft_reference = torch.randn(50, 40, generator=generator).tanh()
    soft_queries = torch.randn(9, 40, generator=generator).tanh()
    from_soft = hamming_top2(soft_queries, soft_reference)
    from_codes = hamming_top2(signed_codes(soft_queries), signed_codes(soft_reference))
    assert torch.equal(from_soft.d1, from_codes.d1) and torch.equal(from_soft.d2, from_codes.d2)


def test_deduplicate_rows_keeps_first_appearance_order():
    x = torch.tensor([[1, 2], [3, 4], [1, 2], [0, 0], [3, 4]], dtype=torch.uint8)
    unique = deduplicate_rows(x)
    assert unique.rows.tolist() == [[1, 2], [3, 4], [0, 0]]
    assert unique.inverse.tolist() == [0, 1, 0, 2, 1]
    assert first_occurrence(unique.inverse).tolist() == [0, 1, 3]
    assert torch.equal(unique.rows[unique.inverse], x)


def test_deduplicate_rows_of_token_grids_and_unique_data():
    grids = torch.randint(0, 4, (6, 3, 3), generator=torch.Generator().manual_seed(0))
    grids[4] = grids[0]
    unique = deduplicate_rows(grids)
    assert unique.rows.shape == (5, 3, 3) and torch.equal(unique.rows[unique.inverse], grids)
    distinct = torch.arange(12).view(4, 3)
    assert torch.equal(deduplicate_rows(distinct).rows, distinct)


def test_benchmark_rows_without_faiss(monkeypatch):
    from bench import bench_nn_search

    monkeypatch.setattr(bench_nn_search, "try_import_faiss", lambda: None)
    rows = bench_nn_search.run(smoke=True)
    assert [row.name for row in rows] == list(bench_nn_search.ROW_NAMES)
    for row in rows:
        assert row.baseline is None and row.note == "not run: faiss-cpu missing" and row.ours > 0


def brute_force_hamming_top2(query_bits: np.ndarray, reference_bits: np.ndarray):
    """(Q, 2) distances and indices from all (Q, N) Hamming distances of 0/1 rows, ties to the lower index."""
    hamming = (query_bits[:, None] != reference_bits[None]).sum(-1)  # (Q, N)
    order = np.argsort(hamming, axis=1, kind="stable")[:, :2]
    return np.take_along_axis(hamming, order, axis=1).astype(np.float64), order


@pytest.mark.parametrize("num_bits", [1, 63, 64, 65, 200, 1985])  # around word edges; 1985: > 24 words, two folds
def test_popcount_equals_gemm_equals_brute_force(num_bits, monkeypatch):
    """Distances and indices of the popcount path, incl. duplicates (ties) and codes that are copies."""
    from nn_search import hamming, popcount

    if not hasattr(np, "bitwise_count"):
        pytest.skip("NumPy < 2 has no bitwise_count")
    rng = np.random.default_rng(num_bits)
    reference_bits = rng.integers(0, 2, (203, num_bits))
    query_bits = rng.integers(0, 2, (29, num_bits))
    reference_bits[[5, 9, 17]] = reference_bits[3]  # a 4-way tie for the copies below
    query_bits[:2] = reference_bits[3]
    queries, reference = (torch.from_numpy(bits).to(torch.int8) * 2 - 1 for bits in (query_bits, reference_bits))
    distances, indices = brute_force_hamming_top2(query_bits, reference_bits)
    top = popcount.popcount_hamming_top2(queries, reference, popcount.PopcountBlocks(query_block=4, reference_tile=50))
    assert top.d1.dtype == torch.float64 and top.idx1.dtype == torch.long
    assert np.array_equal(torch.stack([top.d1, top.d2], 1).numpy(), distances)
    assert np.array_equal(torch.stack([top.idx1, top.idx2], 1).numpy(), indices)  # ties to the lower index
    if num_bits >= 63:  # (shorter codes collide by chance)
        assert top.idx1[:2].tolist() == [3, 3] and top.idx2[:2].tolist() == [5, 5]
    monkeypatch.setattr(hamming, "hamming_path", lambda queries, reference: "GEMM")
    gemm = hamming.hamming_top2(queries, reference)
    assert torch.equal(gemm.d1, top.d1) and torch.equal(gemm.d2, top.d2)


def test_popcount_edge_cases():
    from nn_search import popcount

    if not hasattr(np, "bitwise_count"):
        pytest.skip("NumPy < 2 has no bitwise_count")
    two_queries = torch.tensor([[1, -1, 1], [-1, -1, -1]], dtype=torch.int8)
    one = popcount.popcount_hamming_top2(two_queries, torch.tensor([[1, 1, 1]], dtype=torch.int8))  # a single reference row
    assert one.d1.tolist() == [1.0, 3.0] and torch.isinf(one.d2).all() and one.idx1.tolist() == [0, 0] and one.idx2.tolist() == [-1, -1]
    empty = popcount.popcount_hamming_top2(torch.zeros(0, 70, dtype=torch.int8), torch.ones(4, 70, dtype=torch.int8))
    assert empty.d1.shape == (0,) and empty.idx1.dtype == torch.long
    reference = torch.ones(5, 70, dtype=torch.int8)
    first = popcount.popcount_hamming_top2(torch.ones(1, 70, dtype=torch.int8), reference)
    reference[2, :10] = -1  # an in-place write bumps _version: the cached packing must not be reused
    second = popcount.popcount_hamming_top2(-torch.ones(1, 70, dtype=torch.int8), reference)
    assert first.d1.item() == 0 and second.d1.item() == 60 and second.idx1.item() == 2
    # complementary codes: every byte of every XOR word is 0xFF, the densest case for the byte-lane sums
    far = popcount.popcount_hamming_top2(torch.ones(2, 7168, dtype=torch.int8), -torch.ones(3, 7168, dtype=torch.int8))
    assert far.d1.tolist() == [7168.0, 7168.0] and far.d2.tolist() == [7168.0, 7168.0]


def test_hamming_path_is_chosen_per_device_and_build(monkeypatch):
    from nn_search import hamming

    codes = torch.ones(4, 64, dtype=torch.int8)
    expected_cpu = "oneDNN int8 GEMM" if hamming._ONEDNN_QLINEAR is not None else "popcount"
    assert hamming.hamming_path(codes, codes) == expected_cpu
    assert hamming.hamming_path(codes.to("meta"), codes.to("meta")) == "GEMM"  # CUDA and any other device
    monkeypatch.setattr(hamming, "_ONEDNN_QLINEAR", None)
    assert hamming.hamming_path(codes, codes) == "popcount"
    monkeypatch.setattr(hamming, "_ONEDNN_QLINEAR", (None, None))
    monkeypatch.setattr(hamming, "PREPACKED_CACHE_BYTES", 4 * 64 - 1)  # a reference too large to keep prepacked
    assert hamming.hamming_path(codes, codes) == "popcount"


def test_hamming_search_of_inference_tensors_is_exact_and_kept_nowhere():
    """Metrics search under torch.inference_mode, where tensors have no version counter: every path still
    answers exactly, and an inference tensor's packing is never cached (an in-place write could not be seen)."""
    from nn_search import hamming
    from nn_search.reference_cache import ReferenceCache

    with torch.inference_mode():
        reference = torch.ones(5, 70, dtype=torch.int8)
        first = hamming.hamming_top2(torch.ones(1, 70, dtype=torch.int8), reference)
        reference[2, :10] = -1
        second = hamming.hamming_top2(-torch.ones(1, 70, dtype=torch.int8), reference)
        cache = ReferenceCache()
        built = cache.get(reference, lambda r: object())
        assert cache.get(reference, lambda r: object()) is not built
    assert first.d1.item() == 0 and second.d1.item() == 60 and second.idx1.item() == 2
