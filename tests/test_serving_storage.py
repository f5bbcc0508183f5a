"""Connection options (issue 23 item 4, the shards side): every command that takes a bucket path
accepts --s3_endpoint_url, --s3_access_key_id, --s3_secret_access_key, --s3_region_name and
--project, against the S3 (moto) and GCS (emulator) servers."""

import argparse

import pytest
from _serving_util import dataset, upload
from stores import SECRET, gcs_server, s3_server

from gradum_cli.main import main as gradum
from shards import ShardSet
from shards.storage_options import StorageOptions, add_storage_arguments

AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    return dataset(tmp_path_factory.mktemp("src") / "d", n=1200, rows=300)


def test_the_options_parse_mask_the_secret_and_pass_to_beam():
    p = argparse.ArgumentParser()
    add_storage_arguments(p)
    args = p.parse_args(
        ["--s3-endpoint-url", "http://h:9", "--s3_access_key_id", "k"]
        + ["--s3_secret_access_key", SECRET, "--project", "proj"]
    )
    opts = StorageOptions.from_args(args)
    assert SECRET not in repr(opts) and "***" in repr(opts)
    assert f"--s3_secret_access_key={SECRET}" in opts.beam_args()
    assert (
        "--project=proj" in opts.beam_args() and "--s3_endpoint_url=http://h:9" in opts.beam_args()
    )
    with pytest.raises(ValueError, match="http"):
        StorageOptions(s3_endpoint_url="h:9")
    with pytest.raises(ValueError, match="both"):
        StorageOptions(s3_access_key_id="k")


def test_every_command_reaches_s3_with_the_options_alone(local, tmp_path, monkeypatch, capsys):
    with s3_server("gradum-opts") as s3:
        url = upload(s3, local, "d")
        endpoint = s3.env["AWS_ENDPOINT_URL"]
        for var in AWS_VARS:  # nothing from the environment: the options must do it
            monkeypatch.delenv(var, raising=False)
        opts = ["--s3_endpoint_url", endpoint, "--s3_access_key_id", "gradum-key"]
        opts += ["--s3_secret_access_key", SECRET, "--s3_region_name", "us-east-1"]
        opts += ["--cache-dir", str(tmp_path / "c"), "--cache-limit", "50MB"]
        assert gradum(["shards", "summary", url, *opts]) == 0
        assert gradum(["shards", "head", url, "-n", "2", *opts]) == 0
        assert gradum(["shards", "validate", url, *opts]) == 0
        assert gradum(["preview", url, "--steps", "5", "--batch-size", "8", *opts]) == 0
        html = tmp_path / "r.html"
        assert gradum(["shards", "report", url, "--html", str(html), *opts]) == 0
        assert html.stat().st_size > 1000
        dest = s3.url("sorted")
        assert gradum(["shards", "reorder", url, dest, "--rows-per-shard", "400", *opts]) == 0
        assert gradum(["shards", "validate", dest, *opts]) == 0
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err
        ss = ShardSet.open(
            dest,
            cache_dir=tmp_path / "c2",
            storage=StorageOptions(endpoint, "gradum-key", SECRET, "us-east-1"),
        )
        assert ss.manifest["layout"]["rows_per_shard"] == 400 and ss.num_rows == 1200
        assert set(s3.keys("sorted/index/")) and "sorted/manifest.json" in s3.keys("sorted/")


def test_gcs_with_the_emulator_and_a_project(local, tmp_path):
    with gcs_server("gradum-opts-gcs") as gcs:
        url = upload(gcs, local, "d")
        opts = ["--project", "test-project", "--cache-dir", str(tmp_path / "c")]
        assert gradum(["shards", "summary", url, *opts]) == 0
        assert gradum(["preview", url, "--steps", "3", "--batch-size", "4", *opts]) == 0
        ss = ShardSet.open(url, storage=StorageOptions(project="test-project"))
        assert ss.column("difficulty").size == 1200 and ss.stats()["read"]["shards"] == 0
