"""The paper venue's matching engine: pure logic, no I/O, no clock of its own.

It works on the state kept by ``exchanges/paper_ledger.py`` (:class:`PaperLedger`), every
change recorded there as a delta.

Execution rules (the contract the tests pin down):

- a market order fills at the last price moved by ``slippage_bps`` against the taker (buy
  pays up, sell receives less), rounded to the tick against the taker, with the taker fee;
- a resting limit fills in full at its limit price, maker fee, on the first price at or
  through it (buy ``p <= limit``, sell ``p >= limit``); a limit that is marketable when
  placed or amended takes liquidity at the market price (never worse than its limit),
  taker fee;
- stop-market (buy ``p >= trigger``, sell ``p <= trigger``) and take-profit-market (sell
  ``p >= trigger``, buy ``p <= trigger``) execute like a market order at the price that
  fired them: a gap through the trigger fills at the gap's price, not at the trigger;
- a stop-limit fires like a stop and then behaves as a limit at its ``price``;
- a stop or take-profit that would fire the moment it is placed is refused, like Bybit
  (110092 / 110093) and Binance (-2021) do;
- reduce-only: refused when there is no position to reduce; each fill is capped at the
  open position (the order's amount shrinks to what it could do, as Bybit does); when it
  would execute and the position is gone, it is cancelled instead;
- fees are in the quote currency; the balance moves by realised P&L minus fees; no
  leverage factor in P&L (failure mode 12); leverage only scales the margin check;
- resting orders on a symbol are matched in the order they were placed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from core.models import Market, Side, Tick
from core.money import ONE, ZERO, floor_to_step, round_to_step
from core.order_model import Fill, OrderStatus, OrderType
from core.venue import (
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    OrderRequest,
)
from exchanges.paper_ledger import (
    BPS,
    SUPPORTED_TYPES,
    TIME_IN_FORCE,
    TRIGGER_TYPES,
    PaperLedger,
    PaperOrder,
)
from exchanges.paper_markets import check_amount, check_cost, check_price

_INFINITY = Decimal("Infinity")
_UNCHANGED: tuple[PaperOrder, ...] = ()  # shared: most ticks change nothing


def _quiet_band(orders: Iterable[PaperOrder]) -> tuple[Decimal, Decimal]:
    """``(low, high)``: at a price strictly between them none of ``orders`` matches.

    The exact complement of :meth:`PaperBook._match`'s conditions: a buy limit (or a
    triggered stop-limit's buy limit) matches at or below its price, a sell at or above;
    a trigger fires at or beyond its trigger (:func:`fires`); a market order always.
    """
    low, high = -_INFINITY, _INFINITY
    for order in orders:
        if not order.is_live:
            continue
        kind = order.type
        if kind is OrderType.MARKET:
            return _INFINITY, -_INFINITY
        if kind is OrderType.LIMIT or order.triggered:
            level, rising = order.price, order.side is Side.SELL
        else:
            level = order.trigger_price
            rising = (kind is OrderType.TAKE_PROFIT_MARKET) is (order.side is Side.SELL)
        assert level is not None
        if rising:
            high = min(high, level)
        else:
            low = max(low, level)
    return low, high


def fires(kind: OrderType, side: Side, trigger: Decimal, price: Decimal) -> bool:
    """Whether a trigger order fires at ``price``: stops buy rising / sell falling,
    take-profits the other way round."""
    rising = (kind is OrderType.TAKE_PROFIT_MARKET) is (side is Side.SELL)
    return price >= trigger if rising else price <= trigger


class PaperBook(PaperLedger):
    """The matching rules of one paper account: placing, amending, cancelling, executing."""

    # -- placing, cancelling, amending --------------------------------------------------
    def place(self, request: OrderRequest, market: Market) -> PaperOrder:
        """Validate ``request`` like a real venue, accept it and execute what executes now."""
        self._validate(request, market)
        now = self._now()
        order = PaperOrder(
            id=f"po-{self.next_order}",
            seq=self.next_order,
            client_order_id=request.client_order_id or None,
            symbol=market.symbol,
            side=request.side,
            type=request.type,
            amount=request.amount,
            price=None if request.type is OrderType.MARKET else request.price,
            trigger_price=request.trigger_price if request.type in TRIGGER_TYPES else None,
            reduce_only=request.reduce_only,
            time_in_force=request.time_in_force.upper() if request.time_in_force else None,
            status=OrderStatus.NEW,
            created_at=now,
            updated_at=now,
        )
        self.next_order += 1
        self.orders[order.id] = order
        if order.client_order_id:
            self.by_client[order.client_order_id] = order
        self._touch(order)
        self._rest(order)
        if order.type is OrderType.MARKET:
            self._fill_market(order, self.last_price(order.symbol))
        elif order.type is OrderType.LIMIT:
            self._take_if_marketable(order)
        return order

    def cancel(self, order: PaperOrder) -> PaperOrder:
        """Cancel a live order; a finished one is "not found or too late", as on Bybit."""
        if not order.is_live:
            raise OrderNotFound(
                f"paper: order {order.id} is {order.status.value}: too late to cancel"
            )
        self._finish(order, OrderStatus.CANCELLED, None)
        return order

    def edit(
        self,
        order: PaperOrder,
        amount: Decimal | None,
        price: Decimal | None,
        trigger_price: Decimal | None,
    ) -> PaperOrder:
        """Amend a resting order in place; the new values pass the same checks as a new order."""
        if not order.is_live:
            raise OrderNotFound(
                f"paper: order {order.id} is {order.status.value}: too late to amend"
            )
        if order.type is OrderType.MARKET:
            raise InvalidOrder("paper: a market order cannot be amended")
        market = self.markets.resolve(order.symbol)
        request = OrderRequest(
            client_order_id=order.client_order_id or "",
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            amount=order.amount if amount is None else amount,
            price=order.price if price is None else price,
            trigger_price=order.trigger_price if trigger_price is None else trigger_price,
            reduce_only=order.reduce_only,
            time_in_force=order.time_in_force,
        )
        self._validate(request, market, editing=order)
        if request.amount <= order.filled:
            raise InvalidOrder(
                f"paper: new amount {request.amount} must exceed the filled {order.filled}"
            )
        order.amount = request.amount
        order.price = request.price
        order.trigger_price = request.trigger_price
        self._touch(order)
        if order.type is OrderType.LIMIT or order.triggered:
            self._take_if_marketable(order)
        return order

    # -- prices --------------------------------------------------------------------------
    def on_price(self, tick: Tick) -> Sequence[PaperOrder]:
        """Record the price and match the symbol's resting orders; return the orders changed."""
        symbol = tick.symbol
        self.prices[symbol] = tick
        self._changed_prices.add(symbol)
        resting = self._resting.get(symbol)
        if not resting:
            return _UNCHANGED
        price = tick.price
        band = self._quiet.get(symbol)
        if band is None:
            band = self._quiet[symbol] = _quiet_band(resting.values())
        if band[0] < price < band[1]:
            return _UNCHANGED  # the common tick: every resting order is away from the price
        changed: list[PaperOrder] = []
        for order in list(resting.values()):
            if order.is_live and self._match(order, price):
                changed.append(order)
        return changed

    def _match(self, order: PaperOrder, price: Decimal) -> bool:
        kind = order.type
        if kind is OrderType.MARKET:
            self._fill_market(order, price)
            return True
        if kind is OrderType.LIMIT or order.triggered:
            assert order.price is not None
            if (price <= order.price) if order.side is Side.BUY else (price >= order.price):
                self._execute(order, order.remaining, order.price, maker=True)
                return True
            return False
        if not self._fires(order, price):
            return False
        if kind is OrderType.STOP_LIMIT:
            order.triggered = True
            self._touch(order)
            self._take_if_marketable(order)
        else:
            self._execute(order, order.remaining, self._taker_price(order, price), maker=False)
        return True

    # -- execution -----------------------------------------------------------------------
    def _fires(self, order: PaperOrder, price: Decimal) -> bool:
        assert order.trigger_price is not None
        return fires(order.type, order.side, order.trigger_price, price)

    def _taker_price(self, order: PaperOrder, price: Decimal) -> Decimal:
        """The market price moved by the slippage against the taker, on the tick."""
        tick_size = self.markets.resolve(order.symbol).tick_size
        if order.side is Side.BUY:
            worse = round_to_step(price * (ONE + self.slippage_bps / BPS), tick_size, ROUND_CEILING)
            return min(worse, order.price) if order.price is not None else worse
        worse = round_to_step(price * (ONE - self.slippage_bps / BPS), tick_size, ROUND_FLOOR)
        return max(worse, order.price) if order.price is not None else worse

    def _take_if_marketable(self, order: PaperOrder) -> None:
        """A limit at or through the market takes liquidity now; IOC/FOK never rest."""
        tick = self.prices.get(order.symbol)
        assert order.price is not None
        if tick is not None:
            price = tick.price
            if (price <= order.price) if order.side is Side.BUY else (price >= order.price):
                self._execute(order, order.remaining, self._taker_price(order, price), maker=False)
        if order.is_live and order.time_in_force in ("IOC", "FOK"):
            self._finish(order, OrderStatus.CANCELLED, "not marketable (IOC/FOK)")

    def _fill_market(self, order: PaperOrder, price: Decimal) -> None:
        qty = order.remaining
        if 0 < self.partial_fill < 1:
            step = self.markets.resolve(order.symbol).amount_step
            slice_qty = max(floor_to_step(order.amount * self.partial_fill, step), step)
            qty = min(qty, slice_qty)
        self._execute(order, qty, self._taker_price(order, price), maker=False)

    def _execute(self, order: PaperOrder, qty: Decimal, price: Decimal, *, maker: bool) -> None:
        position = self.positions.get(order.symbol)
        if order.reduce_only:
            held = ZERO
            if position is not None and (position.qty > 0) is (order.side is Side.SELL):
                held = abs(position.qty)
            if held == 0:
                self._finish(order, OrderStatus.CANCELLED, "reduce-only: no position to reduce")
                return
            if qty > held:
                qty = held
                order.amount = order.filled + qty
        market = self.markets.resolve(order.symbol)
        now = self._now()
        fee = price * qty * market.contract_size * (self.maker_fee if maker else self.taker_fee)
        fill = Fill(
            trade_id=f"pt-{self.next_trade}",
            price=price,
            amount=qty,
            fee=fee,
            fee_currency=market.quote,
            ts=now,
            is_maker=maker,
            symbol=order.symbol,
            side=order.side,
            exchange_order_id=order.id,
            client_order_id=order.client_order_id,
        )
        self.next_trade += 1
        self.fills.append(fill)
        self.fills_by_order.setdefault(order.id, []).append(fill)
        self._new_fills.append(fill)
        order.filled += qty
        order.cost += price * qty
        order.fee += fee
        realized = self._apply_to_position(order.symbol, order.side, qty, price, market, now)
        self.balance += realized - fee
        if order.remaining == 0:
            self._finish(order, OrderStatus.FILLED, None)
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
            self._touch(order)

    def _finish(self, order: PaperOrder, status: OrderStatus, reason: str | None) -> None:
        order.status = status
        if reason is not None:
            order.reason = reason
        self._touch(order)
        resting = self._resting.get(order.symbol)
        if resting is not None:
            resting.pop(order.id, None)

    # -- validation ----------------------------------------------------------------------
    def _validate(
        self, request: OrderRequest, market: Market, editing: PaperOrder | None = None
    ) -> None:
        kind = request.type
        if kind not in SUPPORTED_TYPES:
            raise InvalidOrder(f"paper: order type {kind.value} is not supported natively")
        cid = request.client_order_id
        if editing is None and cid and cid in self.by_client:
            raise InvalidOrder(f"paper: duplicate client order id {cid!r}")
        tif = request.time_in_force.upper() if request.time_in_force else None
        if tif is not None and tif not in TIME_IN_FORCE:
            raise InvalidOrder(f"paper: unknown time in force {request.time_in_force!r}")
        check_amount(market, request.amount)
        needs_price = kind in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        if needs_price:
            if request.price is None:
                raise InvalidOrder(f"paper: a {kind.value} order needs a price")
            check_price(market, request.price, "price")
        if kind in TRIGGER_TYPES:
            if request.trigger_price is None:
                raise InvalidOrder(f"paper: a {kind.value} order needs a trigger price")
            check_price(market, request.trigger_price, "trigger price")
        tick = self.prices.get(market.symbol)
        if kind is OrderType.MARKET:
            reference = self.last_price(market.symbol)
        elif needs_price:
            assert request.price is not None
            reference = request.price
        else:
            assert request.trigger_price is not None
            reference = request.trigger_price
        if not request.reduce_only:
            check_cost(market, request.amount, reference)
        if kind in TRIGGER_TYPES and tick is not None and not (editing and editing.triggered):
            assert request.trigger_price is not None
            if fires(kind, request.side, request.trigger_price, tick.price):
                raise InvalidOrder(
                    f"paper: {kind.value} {request.side.value} trigger {request.trigger_price} "
                    f"would trigger immediately (last price {tick.price})"
                )
        if tif == "PO" and kind is OrderType.LIMIT and tick is not None:
            assert request.price is not None
            crosses = (
                tick.price <= request.price
                if request.side is Side.BUY
                else (tick.price >= request.price)
            )
            if crosses:
                raise InvalidOrder("paper: post-only order would take liquidity")
        if request.reduce_only:
            position = self.positions.get(market.symbol)
            if position is None or (position.qty > 0) is not (request.side is Side.SELL):
                raise InvalidOrder(
                    f"paper: reduce-only {request.side.value} on {market.symbol} has no "
                    "position to reduce"
                )
        elif editing is None:
            self._check_margin(request, market, reference)

    def _check_margin(self, request: OrderRequest, market: Market, price: Decimal) -> None:
        """Loose initial-margin check: notional / leverage must fit in the free balance."""
        position = self.positions.get(market.symbol)
        added = request.amount
        if position is not None and (position.qty > 0) is (request.side is Side.SELL):
            added = max(request.amount - abs(position.qty), ZERO)
        required = added * price * market.contract_size / self.leverage
        if required == 0:
            return
        free = self.balance - self.used_margin()
        if required > free:
            raise InsufficientFunds(
                f"paper: order needs {required} {market.quote} of margin at {self.leverage}x, "
                f"free balance is {free}"
            )
