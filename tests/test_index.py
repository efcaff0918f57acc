import numpy as np
import pandas as pd
import pytest

from pipeline.data import prepare_dataset, read_provenance, read_table
from pipeline.data import shard_bounds
from pipeline.embeddings import embeddings_table, read_embeddings
from pipeline.index import ShardedIndex, build_index, build_shard_indexes, denoise_with_teacher, mine_negatives, window_candidates


def test_shard_bounds_cover_everything_once():
    for n_items in (0, 1, 7, 10):
        for num_shards in (1, 3, 4):
            covered = []
            for k in range(num_shards):
                start, stop = shard_bounds(n_items, k, num_shards)
                covered.extend(range(start, stop))
            assert covered == list(range(n_items))


def write_shards(tmp_path, ids, vectors, num_shards):
    import pyarrow.parquet as pq

    paths = []
    for k in range(num_shards):
        start, stop = shard_bounds(len(ids), k, num_shards)
        path = tmp_path / f"shard-{k}-of-{num_shards}.parquet"
        pq.write_table(embeddings_table(ids[start:stop], vectors[start:stop]), path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("num_shards", [2, 3, 5])
def test_sharded_search_equals_unsharded(tmp_path, num_shards):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(103, 16)).astype(np.float32)
    ids = [f"d{i}" for i in range(103)]
    queries = rng.normal(size=(9, 16)).astype(np.float32)

    single = build_index(vectors)
    ref_scores, ref_idx = single.search(queries, 10)

    paths = write_shards(tmp_path, ids, vectors, num_shards)
    got_ids, got_vectors = read_embeddings(paths)
    assert got_ids == ids and np.array_equal(got_vectors, vectors)
    build_shard_indexes(paths, str(tmp_path / "index"))
    index = ShardedIndex(tmp_path / "index")
    scores, idx = index.search(queries, 10)
    assert [[index.doc_ids[i] for i in row] for row in idx] == [[ids[i] for i in row] for row in ref_idx]
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


def test_a_compressed_index_searches_with_the_recorded_settings(tmp_path):
    """An IVF index built from a factory string, searched with ``index.search``'s nprobe: visiting every
    list is exact (Flat's ranking), one list of 8 is not; a setting the index does not have is refused
    when the index is built."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(400, 8)).astype(np.float32)
    ids = [f"d{i}" for i in range(400)]
    queries = rng.normal(size=(20, 8)).astype(np.float32)
    paths = write_shards(tmp_path, ids, vectors, 1)
    _, exact = build_index(vectors).search(queries, 10)
    found = {}
    for nprobe in (1, 8):
        build_shard_indexes(paths, str(tmp_path / f"ivf-{nprobe}"), factory="IVF8,Flat", search=f"nprobe={nprobe}")
        index = ShardedIndex(tmp_path / f"ivf-{nprobe}")
        assert index.manifest["search"] == f"nprobe={nprobe}" and index.indexes[0].nprobe == nprobe
        found[nprobe] = index.search(queries, 10)[1]
    assert np.array_equal(found[8], exact)
    assert not np.array_equal(found[1], exact)
    with pytest.raises(ValueError, match="efSearch"):
        build_shard_indexes(paths, str(tmp_path / "bad"), factory="IVF8,Flat", search="efSearch=64")
    assert not (tmp_path / "bad").exists()


def test_index_refuses_nan_embeddings(tmp_path):
    vectors = np.ones((4, 3), np.float32)
    vectors[2, 1] = np.nan
    paths = write_shards(tmp_path, ["a", "b", "c", "d"], vectors, 1)
    with pytest.raises(ValueError, match="NaN"):
        build_shard_indexes(paths, str(tmp_path / "index"))
    assert not (tmp_path / "index").exists()


def test_window_excludes_positives_and_respects_ranks():
    ranked = [["p1", "a", "b", "p2", "c", "d", "e"]]
    scores = [[7, 6, 5, 4, 3, 2, 1]]
    frame = window_candidates(["q"], ranked, scores, {"q": {"p1": 1, "p2": 2, "x": 0}}, (1, 4), "m")
    assert frame.doc_id.tolist() == ["b", "c", "d"]
    assert frame["rank"].tolist() == [1, 2, 3]
    assert frame.score.tolist() == [5, 3, 2]
    assert set(frame.miner) == {"m"}


def test_denoising_drops_near_positive_candidates():
    candidates = pd.DataFrame({"query_id": ["q"] * 3, "doc_id": ["a", "b", "c"], "rank": [0, 1, 2],
                               "score": [0.0] * 3, "miner": ["m"] * 3})
    teacher = pd.DataFrame({"query_id": ["q"] * 4, "doc_id": ["p", "a", "b", "c"], "score": [10.0, 9.5, 5.0, 11.0]})
    kept = denoise_with_teacher(candidates, teacher, {"q": {"p": 1}}, margin=1.0)
    assert kept.doc_id.tolist() == ["b"]
    kept = denoise_with_teacher(candidates, teacher, {"q": {"p": 1}}, max_score=9.0)
    assert kept.doc_id.tolist() == ["b"]


def test_bm25_mining_on_fixture(tiny_beir, tmp_path):
    prepare_dataset(str(tiny_beir), str(tmp_path / "data"), ["train", "test"])
    out = tmp_path / "candidates.parquet"
    frame = mine_negatives(str(tmp_path / "data/queries.parquet"), str(tmp_path / "data/qrels-train.parquet"),
                           str(out), {"name": "bm25", "kind": "bm25"}, depth=30, window=(2, 12),
                           corpus_path=str(tmp_path / "data/corpus.parquet"))
    qrels = read_table(tmp_path / "data/qrels-train.parquet")
    positives = set(zip(qrels.query_id, qrels.doc_id))
    assert not positives & set(zip(frame.query_id, frame.doc_id))
    assert frame["rank"].between(2, 11).all()
    assert frame.groupby("query_id").size().max() == 10
    assert set(frame.query_id) == set(qrels.query_id)
    meta = read_provenance(out)
    assert meta["window"] == [2, 12] and meta["depth"] == 30 and meta["miner"]["kind"] == "bm25"
    assert list(read_table(out).columns) == ["query_id", "doc_id", "rank", "score", "miner"]


def test_bm25_pair_scores_equal_retrieval_scores(tiny_beir, tmp_path):
    from pipeline.lexical import BM25

    prepare_dataset(str(tiny_beir), str(tmp_path / "data"), ["train", "test"])
    corpus = read_table(tmp_path / "data/corpus.parquet")
    bm25 = BM25.from_corpus(corpus)
    queries = {"a": "heart artery cardio3x", "b": "brain neuron"}
    ids, scores = bm25.search(list(queries.values()), 5)
    pairs = pd.DataFrame([(q, d) for q, row in zip(queries, ids) for d in row], columns=["query_id", "doc_id"])
    np.testing.assert_allclose(bm25.score_pairs(queries, pairs), [s for row in scores for s in row], rtol=1e-6)
    assert ids[0][0] == "d3", "the document carrying the query's marker ranks first"
