"""The layout constants match the authors' columns and the paper's Table 1."""

import pytest

import edge
from edge.errors import DataError
from edge.layout import CLASS_NAMES, CSV_COLUMNS, SENSORS, class_index, risk_of_zone


def test_channels_are_the_authors_columns_in_order():
    assert len(edge.CHANNELS) == 36
    assert edge.CHANNELS[:7] == ("Side_A_x", "Side_A_y", "Side_A_z", "Side_G_x", "Side_G_y", "Side_G_z", "LtWt_A_x")
    assert edge.CHANNELS[-1] == "Thig_G_z"
    assert SENSORS == ("Side", "LtWt", "RtWt", "Back", "UArm", "Thig")
    assert CSV_COLUMNS[-1] == "Time_stp"


def test_zone_risk_is_table_1():
    assert {z for z, r in edge.ZONE_RISK.items() if r == "low"} == {4, 5}
    assert {z for z, r in edge.ZONE_RISK.items() if r == "medium"} == {6, 7, 8, 9}
    assert {z for z, r in edge.ZONE_RISK.items() if r == "high"} == {1, 2, 3, 10, 11, 12}
    assert CLASS_NAMES == ("low", "medium", "high")
    assert class_index("high") == 2


@pytest.mark.parametrize("bad", [0, 13, "x", None])
def test_unknown_zone_is_named(bad):
    with pytest.raises(DataError, match="not an ACGIH zone"):
        risk_of_zone(bad)


def test_predicted_class_is_argmax_with_exact_ties_going_to_the_higher_risk():
    import numpy as np

    from edge.layout import predicted_class

    assert predicted_class([0.2, 0.5, 0.3]) == 1
    assert predicted_class([0.4961, 0.4961, 0.0078]) == 1  # low/medium tie -> medium
    assert predicted_class([0.0078, 0.4961, 0.4961]) == 2  # medium/high tie -> high
    assert predicted_class([1 / 3, 1 / 3, 1 / 3]) == 2
    batch = np.array([[0.9, 0.05, 0.05], [0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    assert predicted_class(batch).tolist() == [0, 1, 2]
    rng = np.random.default_rng(1)
    p = rng.random((200, 3))
    assert np.array_equal(predicted_class(p), np.argmax(p, axis=1))  # without ties it is argmax
