"""Reservation ids never let two order lines share one reservation."""

from hypothesis import given
from hypothesis import strategies as st

from ledger.bounds import parse_reservation_id, reservation_id

ids = st.text(alphabet=st.sampled_from("ab/%2F5"), min_size=1, max_size=8)


def test_plain_ids_read_as_order_slash_line():
    assert reservation_id("1001", "7") == "1001/7"


def test_a_slash_in_an_id_does_not_make_two_lines_collide():
    assert reservation_id("a/b", "c") != reservation_id("a", "b/c")


@given(ids, ids, ids, ids)
def test_different_lines_have_different_reservations(o1, l1, o2, l2):
    if (o1, l1) != (o2, l2):
        assert reservation_id(o1, l1) != reservation_id(o2, l2)


@given(ids, ids)
def test_a_reservation_id_names_its_order_and_line(order, line):
    assert parse_reservation_id(reservation_id(order, line)) == (order, line)
