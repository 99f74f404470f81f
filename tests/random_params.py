"""Random surfel parameters in GaussianModel's layout, shared by the tests and the fuzzer."""

import torch


def random_params(count=20, sh_degree=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        "means": torch.randn(count, 3, generator=generator),
        "log_scales": torch.randn(count, 2, generator=generator) - 3,
        "quats": torch.randn(count, 4, generator=generator),
        "opacity_logits": torch.randn(count, generator=generator),
        "sh_dc": torch.randn(count, 1, 3, generator=generator),
        "sh_rest": torch.randn(count, (sh_degree + 1) ** 2 - 1, 3, generator=generator),
    }
