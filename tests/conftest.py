import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny():
    from r1.models import load_model

    return load_model("tiny", device="cpu")


# -- serving: a tiny model taught real answers (trained once), a server per test module ----------

@pytest.fixture(scope="session")
def answering_model(tmp_path_factory):
    from serve_support import train_answering_tiny

    return str(train_answering_tiny(tmp_path_factory.mktemp("tiny-answers")))


@pytest.fixture(scope="module")
def server(answering_model):
    from serve_support import API_KEY, make_server

    with make_server(answering_model, api_key=API_KEY) as srv:
        yield srv


@pytest.fixture()
def client(server):
    import openai

    from serve_support import API_KEY

    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)
