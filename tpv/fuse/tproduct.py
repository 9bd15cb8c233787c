"""Third-order tensor algebra under the t-product (Kilmer & Martin, 2011), the algebra FUSE fits its maps in.

A third-order tensor ``A`` of shape ``(n1, n2, n3)`` is read as an ``n1 x n2`` matrix whose entries are *tubes*
of length ``n3`` (here: ``n3`` token positions). Its *frontal slices* are the matrices ``A[:, :, i]``. The
t-product of ``A`` (``n1 x n2 x n3``) and ``B`` (``n2 x n4 x n3``) is the ``n1 x n4 x n3`` tensor::

    A *_t B = fold(bcirc(A) @ unfold(B))

where ``unfold(B)`` stacks the frontal slices of ``B`` vertically (``(n2 * n3, n4)``), ``bcirc(A)`` is the
block-circulant matrix whose block ``(i, j)`` is ``A[:, :, (i - j) mod n3]`` (``(n1 * n3, n2 * n3)``) and
``fold`` undoes ``unfold``. Slice ``j`` of the product is the circular convolution
``sum_l A[:, :, l] @ B[:, :, (j - l) mod n3]``. The discrete Fourier transform along the third mode
block-diagonalizes ``bcirc``, so the product is computed as one matrix product per frequency ("facewise")::

    A *_t B = ifft(fft(A, dim=2) @facewise fft(B, dim=2), dim=2)

which is what :func:`t_product` does. With it come the identity tensor (:func:`t_identity`: first frontal slice
the identity matrix, the others zero), the transpose (:func:`t_transpose`: transpose every slice and reverse
the order of slices ``1 .. n3 - 1``), and the Moore-Penrose inverse (:func:`t_pinv`: the matrix pseudo-inverse
of every Fourier face), which satisfies the four Penrose equations under ``*_t``. The adjoint of
``X -> X *_t G`` under the Frobenius inner product is ``Z -> Z *_t t_transpose(G)``, which is what carries a
gradient backwards through a fitted map.

All functions are pure: they take real tensors and return new real tensors (float32 or float64, the dtype of
the input); none modifies its arguments. Shapes are checked, and a mismatch raises :class:`~tpv.ConfigError`
naming both shapes.
"""

from __future__ import annotations

import torch

from tpv.errors import ConfigError

__all__ = [
    "block_circulant",
    "facewise",
    "t_identity",
    "t_pinv",
    "t_product",
    "t_transpose",
    "unfold",
]


def _check3(x: object, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{what} must be a torch.Tensor of shape (n1, n2, n3), got {type(x).__name__}")
    if x.ndim != 3:
        raise ConfigError(f"{what} must be a third-order tensor (n1, n2, n3), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ConfigError(f"{what} must be a real floating tensor, got {x.dtype}")
    return x


def facewise(a_hat: torch.Tensor, b_hat: torch.Tensor) -> torch.Tensor:
    """Facewise product of two tensors: one matrix product per frontal slice.

    Args:
        a_hat: shape ``(n1, n2, n3)`` (real or complex).
        b_hat: shape ``(n2, n4, n3)``, same dtype.

    Returns:
        Shape ``(n1, n4, n3)``, slice ``i`` equal to ``a_hat[:, :, i] @ b_hat[:, :, i]``.
    """
    return torch.einsum("ijf,jkf->ikf", a_hat, b_hat)


def t_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The t-product ``a *_t b``, computed with a real FFT along the third mode and facewise products.

    Args:
        a: real tensor of shape ``(n1, n2, n3)``.
        b: real tensor of shape ``(n2, n4, n3)``, same dtype.

    Returns:
        Real tensor of shape ``(n1, n4, n3)``, equal to ``fold(block_circulant(a) @ unfold(b))``.

    Raises:
        ConfigError: not third-order, or the inner sizes or the tube lengths differ.
    """
    _check3(a, "the left tensor")
    _check3(b, "the right tensor")
    if a.shape[1] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ConfigError(
            f"t-product needs shapes (n1, n2, n3) and (n2, n4, n3): got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    n3 = a.shape[2]
    a_hat = torch.fft.rfft(a, dim=2)  # (n1, n2, n3 // 2 + 1) complex
    b_hat = torch.fft.rfft(b, dim=2)  # (n2, n4, n3 // 2 + 1) complex
    return torch.fft.irfft(facewise(a_hat, b_hat), n=n3, dim=2)  # (n1, n4, n3)


def t_identity(n: int, n3: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The identity tensor of the t-product: ``I *_t A = A`` and ``A *_t I = A``.

    Args:
        n: the frontal slices are ``n x n``.
        n3: tube length.
        dtype: floating dtype.

    Returns:
        Shape ``(n, n, n3)``: the identity matrix in slice 0, zeros in slices ``1 .. n3 - 1``.
    """
    if n < 1 or n3 < 1:
        raise ConfigError(f"the identity tensor needs n >= 1 and n3 >= 1, got n={n}, n3={n3}")
    out = torch.zeros(n, n, n3, dtype=dtype)
    out[:, :, 0] = torch.eye(n, dtype=dtype)
    return out


def t_transpose(a: torch.Tensor) -> torch.Tensor:
    """The t-transpose: every frontal slice transposed, slices ``1 .. n3 - 1`` in reverse order.

    It satisfies ``(A *_t B)^T = B^T *_t A^T`` and ``<A *_t B, C> = <A, C *_t B^T>`` (Frobenius inner product).

    Args:
        a: shape ``(n1, n2, n3)``.

    Returns:
        Shape ``(n2, n1, n3)``.
    """
    _check3(a, "the tensor")
    at = a.transpose(0, 1)  # (n2, n1, n3)
    order = [0, *range(a.shape[2] - 1, 0, -1)]
    return at[:, :, order].contiguous()


def t_pinv(a: torch.Tensor, *, rcond: float = 1e-10) -> torch.Tensor:
    """The Moore-Penrose inverse under the t-product: the pseudo-inverse of every Fourier face.

    ``a *_t p *_t a = a``, ``p *_t a *_t p = p`` and both ``a *_t p`` and ``p *_t a`` are t-symmetric.

    Args:
        a: real tensor of shape ``(n1, n2, n3)``.
        rcond: singular values below ``rcond`` times the largest of their face are treated as zero.

    Returns:
        Real tensor of shape ``(n2, n1, n3)``.
    """
    _check3(a, "the tensor")
    n3 = a.shape[2]
    a_hat = torch.fft.rfft(a, dim=2).permute(2, 0, 1)  # (F, n1, n2) complex
    p_hat = torch.linalg.pinv(a_hat, rtol=rcond)  # (F, n2, n1)
    return torch.fft.irfft(p_hat.permute(1, 2, 0), n=n3, dim=2)  # (n2, n1, n3)


def unfold(a: torch.Tensor) -> torch.Tensor:
    """Stack the frontal slices vertically.

    Args:
        a: shape ``(n1, n2, n3)``.

    Returns:
        Shape ``(n1 * n3, n2)``: rows ``i * n1 .. (i + 1) * n1 - 1`` hold slice ``i``.
    """
    _check3(a, "the tensor")
    return a.permute(2, 0, 1).reshape(-1, a.shape[1])


def block_circulant(a: torch.Tensor) -> torch.Tensor:
    """The block-circulant matrix of a tensor (the definition of the t-product, for tests and small inputs).

    Args:
        a: shape ``(n1, n2, n3)``.

    Returns:
        Shape ``(n1 * n3, n2 * n3)``: block ``(i, j)`` is ``a[:, :, (i - j) mod n3]``.
    """
    _check3(a, "the tensor")
    n3 = a.shape[2]
    rows = [torch.cat([a[:, :, (i - j) % n3] for j in range(n3)], dim=1) for i in range(n3)]  # n3 x (n1, n2*n3)
    return torch.cat(rows, dim=0)
