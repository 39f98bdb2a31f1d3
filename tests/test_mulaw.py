import numpy as np

from pipeline.nsynth.mulaw import inverse_mu_law, mu_law, network_input


def test_every_bin_survives_a_round_trip():
    q = np.arange(-128, 129)
    assert np.array_equal(mu_law(inverse_mu_law(q)), q)


def test_forward_floors_and_spans_minus_128_to_128():
    assert mu_law(np.array([1.0, -1.0, 0.0])).tolist() == [128, -128, 0]
    # 0.0101 lies at 29.4 on the mu-law scale, -0.0101 at -29.4: floor, not round or truncate.
    assert mu_law(np.array([0.0101, -0.0101])).tolist() == [29, -30]
    assert network_input(np.array([1.0]))[0] == 1.0


def test_inverse_is_zero_at_zero_and_odd_elsewhere():
    assert inverse_mu_law(np.array([0]))[0] == 0.0
    q = np.arange(1, 128)
    assert np.allclose(inverse_mu_law(q), -inverse_mu_law(-q - 1), atol=1e-7)
