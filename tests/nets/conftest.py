"""nets tests run torch on one thread: tiny training loops slow down ~20× when two threads compete for busy cores."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
